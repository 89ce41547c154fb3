"""Array cache: the second read does not decode; keys follow file and parameters."""

from __future__ import annotations

import os

import numpy as np

from medilab.data.cache import ArrayCache, CachedReader, cache_key


class CountingReader:
    def __init__(self):
        self.calls = 0

    def __call__(self, ref):
        self.calls += 1
        return np.load(ref)


def test_second_read_does_not_decode(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    reader = CountingReader()
    cached = CachedReader(reader, tmp_path / "cache", preprocess=lambda a: a * 2,
                          params={"scale": 2})
    first = cached(tmp_path / "a.npy")
    second = cached(tmp_path / "a.npy")
    assert reader.calls == 1
    assert isinstance(second, np.memmap) and not second.flags.writeable
    np.testing.assert_array_equal(first, np.arange(12).reshape(3, 4) * 2)
    np.testing.assert_array_equal(second, first)
    assert cached.cache.hits == 1 and cached.cache.misses == 1
    # another run (a new reader object) reuses the files on disk
    again = CachedReader(reader, tmp_path / "cache", params={"scale": 2})
    again(tmp_path / "a.npy")
    assert reader.calls == 1
    assert not list((tmp_path / "cache").rglob(".*"))  # no temporary files left


def test_key_changes_with_params_and_file(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros(3))
    key = cache_key(path, {"size": 64})
    assert key == cache_key(path, {"size": 64})
    assert key != cache_key(path, {"size": 128})
    np.save(path, np.zeros(5))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert key != cache_key(path, {"size": 64})


def test_changed_file_is_decoded_again(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros(3))
    reader = CountingReader()
    cached = CachedReader(reader, ArrayCache(tmp_path / "c"))
    cached(path)
    np.save(path, np.ones(4))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cached(path).tolist() == [1, 1, 1, 1] and reader.calls == 2
