"""The ``medilab`` command line: parse, call the library, print. No logic lives here."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from medilab.errors import MedilabError

app = typer.Typer(
    help="medilab: train, evaluate, explain and compare deep-learning models for medical images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RunDir = Annotated[Path, typer.Argument(help="A run folder made by `medilab train`.")]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """medilab: train, evaluate, explain and compare models for medical images."""


@app.command()
def version() -> None:
    """Print medilab's version."""
    from importlib.metadata import version as package_version

    typer.echo(package_version("medilab"))


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors with exit code 2; ``--debug`` shows the traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("MEDILAB_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    command = typer.main.get_command(app)
    try:
        command.main(args=args, prog_name="medilab")  # click handles usage errors (exit 2)
    except MedilabError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)

if __name__ == "__main__":
    main()
