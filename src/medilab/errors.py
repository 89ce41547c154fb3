"""Errors that medilab reports to a user as one line (no traceback unless --debug)."""

from __future__ import annotations


class MedilabError(Exception):
    """A problem with the user's input: a file, a field or a value.

    The message must name the file and/or field and say what is wrong.
    The CLI prints it on one line and exits with code 2.
    """


class InputFileError(MedilabError):
    """A file the user gave cannot be read or has the wrong content."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class ConfigError(MedilabError):
    """The experiment configuration is invalid."""


class WeightsUnavailableError(MedilabError):
    """Pretrained weights were asked for but cannot be found offline."""
