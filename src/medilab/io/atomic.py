"""Write outputs atomically: to a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` on success.

    On any exception the temporary file is removed, so nothing half-written is left.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=suffix or target.suffix or ".tmp",
            dir=target.parent,
        )
    except OSError as exc:  # e.g. a read-only folder: name the output, not the temporary file
        _name_target(exc, target)
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp)):
            _name_target(exc, target)  # a full disk fails write() without naming the file
        raise


def _name_target(exc: OSError, target: Path) -> None:
    """Make ``exc`` name ``target``, so an error message shows the output the user asked for."""
    if exc.errno is not None:
        exc.filename = str(target)
        exc.filename2 = None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; move it to ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        _name_target(exc, target)
        raise
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``target`` atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_csv(frame: Any, target: str | os.PathLike[str]) -> Path:
    """Write a pandas DataFrame as CSV (no index) atomically and return the path."""
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(target)


def write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_once(target: str | os.PathLike[str], data: bytes) -> bytes:
    """Write ``data`` to ``target`` unless it exists, and return what ``target`` then holds.

    Several processes may call this at once (on a shared file system): each writes a temporary
    file and hard-links it to the name, which only the first succeeds in, so every caller reads
    back the same whole file. Where the file system has no hard links, the temporary file is
    renamed onto the name (callers whose ``data`` is the same then still agree)."""
    target = Path(target)
    if target.exists():
        return target.read_bytes()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".once",
                                    dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        try:
            os.link(tmp, target)
        except FileExistsError:
            pass  # another process was first
        except OSError:
            if not target.exists():
                os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target.read_bytes()
