"""A disk cache of preprocessed arrays, so later epochs and runs do no decoding.

Each entry is one ``.npy`` file read back memory-mapped (``np.load(mmap_mode="r")``). The key is
the source file (absolute path, size, mtime) plus a hash of the preprocessing parameters, so a
changed file or changed parameters give a new entry. Files are written atomically. Sources
reading image files go through it unless ``data.cache: false`` (:func:`data_cache`); the folder
is ``data.cache_dir``, else ``$MEDILAB_CACHE_DIR``, else ``~/.cache/medilab/arrays``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medilab.io.atomic import atomic_path
from medilab.version import package_version

CACHE_DIR_ENV = "MEDILAB_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$MEDILAB_CACHE_DIR``, else ``~/.cache/medilab/arrays``."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "medilab" / "arrays"


def data_cache(data: Any) -> ArrayCache | None:
    """The cache a data section asks for (``data.cache``, ``data.cache_dir``); None when off."""
    if not getattr(data, "cache", False):
        return None
    return ArrayCache(getattr(data, "cache_dir", None))


def cached(
    cache: ArrayCache | None,
    ref: str | os.PathLike[str],
    params: Mapping[str, Any],
    compute: Callable[[], np.ndarray],
) -> np.ndarray:
    """``compute()`` served from ``cache`` (read-only) when there is one, else called."""
    return np.asarray(compute()) if cache is None else cache.get(ref, params, compute)


def source_fingerprint(ref: str | os.PathLike[str]) -> dict[str, Any]:
    """Path, size and mtime of a file (or of every file of a folder); npz references keep
    their ``::split::index`` suffix."""
    text = str(ref)
    path_text, sep, member = text.partition("::")
    path = Path(path_text).resolve()
    if path.is_dir():
        stats = [(p.name, p.stat()) for p in sorted(path.iterdir()) if p.is_file()]
        size = sum(s.st_size for _, s in stats)
        mtime = max((s.st_mtime_ns for _, s in stats), default=0)
        names = hashlib.sha256("\n".join(n for n, _ in stats).encode()).hexdigest()[:16]
        return {"path": str(path), "member": member, "size": size, "mtime": mtime, "files": names}
    stat = path.stat()
    return {"path": str(path), "member": member, "size": stat.st_size, "mtime": stat.st_mtime_ns}


def cache_key(ref: str | os.PathLike[str], params: Mapping[str, Any] | None = None) -> str:
    """A hex key of the source fingerprint, the preprocessing parameters and medilab's
    version (a new release may prepare pixels differently)."""
    payload = {"source": source_fingerprint(ref), "params": dict(params or {}),
               "medilab": package_version()}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ArrayCache:
    """``.npy`` files under ``root`` (default :func:`default_cache_dir`), one per source +
    parameters.

    ``get(ref, params, compute)`` returns the cached array (memory-mapped, read-only) or calls
    ``compute()`` once, stores its result atomically and returns it memory-mapped. A folder that
    cannot be written is warned about once and the computed array returned uncached.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.unwritable = False
        self.hits = 0
        self.misses = 0

    def path_for(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(
        self,
        ref: str | os.PathLike[str],
        params: Mapping[str, Any] | None,
        compute: Callable[[], np.ndarray],
    ) -> np.ndarray:
        try:
            target = self.path_for(cache_key(ref, params))
        except OSError:  # not a file (yet): the reader says what is wrong
            return np.ascontiguousarray(compute())
        if target.is_file():
            try:
                array = np.load(target, mmap_mode="r")
            except (ValueError, OSError):  # unreadable entry: recompute below
                pass
            else:
                self.hits += 1
                return array
        self.misses += 1
        array = np.ascontiguousarray(compute())
        if self.unwritable:
            return array
        try:
            with atomic_path(target, suffix=".npy") as tmp:
                np.save(tmp, array)
        except OSError as exc:
            self.unwritable = True
            warnings.warn(f"array cache {self.root} cannot be written ({exc.strerror or exc}); "
                          "images are decoded every time (set data.cache_dir)", stacklevel=2)
            return array
        return np.load(target, mmap_mode="r")

    def clear(self) -> None:
        """Remove every entry of this cache folder."""
        for path in self.root.glob("*/*.npy"):
            path.unlink(missing_ok=True)


class CachedReader:
    """A callable ``ref -> array`` that reads through ``reader`` and ``preprocess`` once and
    serves later calls from an :class:`ArrayCache`. ``params`` names the preprocessing (it is
    part of the key; change it whenever ``preprocess`` changes)."""

    def __init__(
        self,
        reader: Callable[[str], np.ndarray] | None = None,
        cache: ArrayCache | str | os.PathLike[str] | None = None,
        *,
        preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        if reader is None:
            from medilab.data.formats.pixels import read_array

            reader = read_array
        self.reader = reader
        self.cache = cache if isinstance(cache, ArrayCache) else ArrayCache(cache)
        self.preprocess = preprocess
        self.params = dict(params or {})

    def __call__(self, ref: str | os.PathLike[str]) -> np.ndarray:
        def compute() -> np.ndarray:
            array = self.reader(str(ref))
            return self.preprocess(array) if self.preprocess else array

        return self.cache.get(ref, self.params, compute)
