"""Running the command line inside a test (importable from any test folder)."""

from __future__ import annotations

from medilab.cli import main


def run_cli(*args: object) -> int:
    """Run ``medilab ARGS`` in-process; return the exit code."""
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
