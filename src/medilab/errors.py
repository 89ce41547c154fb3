"""Errors that medilab reports to a user as one line (no traceback unless --debug)."""

from __future__ import annotations

import errno
import os


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


class TrainingFailedError(MedilabError):
    """Training stopped on an error inside the fit (the run folder is kept, marked failed)."""


class NonFiniteLossError(TrainingFailedError):
    """The training loss became NaN or infinite."""


class WeightsUnavailableError(MedilabError):
    """Pretrained weights were asked for but cannot be found offline."""


# errno values meaning "the output cannot be written here": a full disk or quota, a read-only
# file system, a folder without write permission
WRITE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT")
    if hasattr(errno, name)
)


def storage_error_line(exc: BaseException) -> str | None:
    """``cannot write PATH: REASON`` (or ``cannot read``) for an ``OSError`` that a user fixes
    on their side (full disk, read-only or permission-denied folder); None for any other error.

    Permission errors on an existing file that cannot be read are reported as ``cannot read``;
    everything else in :data:`WRITE_ERRNOS` is a write (creating, replacing, appending).
    """
    if not isinstance(exc, OSError) or exc.errno not in WRITE_ERRNOS:
        return None
    reason = exc.strerror or os.strerror(exc.errno)
    path = exc.filename
    if path is None:
        return f"cannot write: {reason}"
    verb = "write"
    if exc.errno in (errno.EACCES, errno.EPERM) and os.path.isfile(path) \
            and not os.access(path, os.R_OK):
        verb = "read"
    name = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
    return f"cannot {verb} {name}: {reason}"
