"""Epoch 1 (decode + preprocess, filling the array cache) vs epoch 2 (memory-mapped cache reads)
over real DICOM files replicated into a temporary folder.

    .venv/bin/python benchmarks/io.py [--n 200] [--size 256]

Sources: ``$MEDILAB_DATA/dicom/siim_cr_sample.dcm`` (JPEG, 1024²) and pydicom / pydicom-data test
files (CR MONOCHROME1, JPEG 2000, CT, MR). Prints both epoch times and the speed-up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from medilab.data.cache import ArrayCache, CachedReader
from medilab.data.formats.pixels import read_array

REPO = Path(__file__).resolve().parents[1]
TEST_FILES = ("RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG3_UNCR.dcm", "CT_small.dcm", "MR_small.dcm")


def source_files() -> list[Path]:
    """Real DICOM files available on this machine."""
    from pydicom.data import get_testdata_file

    data = Path(os.environ.get("MEDILAB_DATA", REPO.parent / "shared" / "data"))
    files = [data / "dicom" / "siim_cr_sample.dcm"]
    for name in TEST_FILES:
        try:
            found = get_testdata_file(name)
        except Exception:  # noqa: BLE001 - a missing optional test file is skipped
            found = None
        if found:
            files.append(Path(found))
    return [f for f in files if f.is_file()]


def replicate(files: list[Path], folder: Path, n: int) -> list[Path]:
    """``n`` copies of ``files`` (round robin) under ``folder``."""
    out = []
    for i in range(n):
        target = folder / f"{i:04d}_{files[i % len(files)].name}"
        shutil.copyfile(files[i % len(files)], target)
        out.append(target)
    return out


def preprocess(size: int):
    def run(array: np.ndarray) -> np.ndarray:
        array = np.asarray(array, dtype=np.float32)
        if array.ndim == 3:  # colour or multi-frame: first channel / frame
            array = array[..., 0] if array.shape[-1] in (3, 4) else array[0]
        low, high = float(array.min()), float(array.max())
        array = (array - low) / (high - low) if high > low else np.zeros_like(array)
        return np.asarray(Image.fromarray(array, mode="F").resize((size, size)), np.float32)

    return run


def epoch(reader: CachedReader, files: list[Path]) -> float:
    start = time.perf_counter()
    total = 0.0
    for path in files:
        total += float(np.asarray(reader(path)).sum())  # touch every pixel
    assert np.isfinite(total)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of DICOM files")
    parser.add_argument("--size", type=int, default=256, help="resize to size x size")
    args = parser.parse_args()
    files = source_files()
    if not files:
        raise SystemExit("no DICOM files found (MEDILAB_DATA or pydicom test data)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "dicom").mkdir()
        copies = replicate(files, tmp / "dicom", args.n)
        reader = CachedReader(read_array, ArrayCache(tmp / "cache"), preprocess=preprocess(
            args.size), params={"size": args.size, "norm": "minmax"})
        first = epoch(reader, copies)
        second = epoch(reader, copies)
        print(f"{args.n} DICOM files from {len(files)} sources "
              f"({', '.join(f.name for f in files)}), resized to {args.size}²")
        print(f"epoch 1 (decode + preprocess + write cache): {first:.3f} s")
        print(f"epoch 2 (memory-mapped cache):               {second:.3f} s")
        print(f"speed-up: {first / second:.1f}x  (cache misses {reader.cache.misses}, "
              f"hits {reader.cache.hits})")


if __name__ == "__main__":
    main()
