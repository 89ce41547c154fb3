"""Running the command line inside a test (importable from any test folder)."""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from medilab.cli import main


def run_cli(*args: object) -> int:
    """Run ``medilab ARGS`` in-process; return the exit code."""
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


class Forked:
    """``medilab ARGS`` (``cli.main``) in a forked child of this process: a real process to
    kill, without the seconds a fresh interpreter spends importing torch and Lightning."""

    def __init__(self, args: tuple[object, ...], log: Path) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # the child: run the command, never return into pytest
            code = 1
            try:
                sys.stdout = sys.stderr = open(log, "w", buffering=1)  # noqa: SIM115
                code = run_cli(*args)
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
            finally:
                os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"pid {self.pid} still runs after {timeout} s")
            time.sleep(0.01)
        return self.returncode
