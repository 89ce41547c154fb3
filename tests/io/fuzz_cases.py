"""Shared by tests/io/test_fuzz.py and benchmarks/fuzz.py: real seed inputs for each reader,
mutations (truncation, byte flips, huge declared sizes) and the check that a reader either
returns a valid result or raises ``MedilabError``.

Readers run under a temporary address-space limit (``RLIMIT_AS``: the current size plus
``MEMORY_HEADROOM``), so a declared size of many gigabytes shows up as a ``MemoryError`` (a
failure: the reader should have refused it) instead of exhausting the machine.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medilab.errors import ConfigError, MedilabError

MEMORY_HEADROOM = 1 << 30  # 1 GiB above what the process already maps


@dataclass(frozen=True)
class Seed:
    """A valid input file of one format and how to read it."""

    name: str
    suffix: str
    data: bytes
    read: Callable[[Path], object]
    huge: Callable[[bytes, int], bytes]  # declare a huge size (the int picks how)


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _png_huge(data: bytes, pick: int) -> bytes:
    """IHDR width and height set large, with a correct CRC so the header is believed."""
    side = (1 << 16, 1 << 20, 0x7FFFFFFF, 46341)[pick % 4]
    start = data.index(b"IHDR")
    body = data[start + 4:start + 17]
    body = struct.pack(">II", side, side) + body[8:]
    chunk = b"IHDR" + body
    return data[:start] + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[start + 21:]


def _dicom_bytes() -> bytes:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm")).read_bytes()


def _dicom_huge(data: bytes, pick: int) -> bytes:
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    ds.Rows = ds.Columns = (65535, 40000, 128, 65535)[pick % 4]
    if pick % 2:
        ds.NumberOfFrames = (100000, 2**31 - 1)[pick // 2 % 2]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _nrrd_text(sizes: str) -> bytes:
    return (f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: {sizes}\nencoding: raw\n"
            "spacings: 1.5 1 1\n\n").encode()


def _nrrd_bytes() -> bytes:
    return _nrrd_text("4 5 6") + bytes(range(120))


def _nrrd_huge(data: bytes, pick: int) -> bytes:
    sizes = ("100000 100000 100000", "4294967295 2 2", "2000 2000 2000", "-1 5 6")[pick % 4]
    return _nrrd_text(sizes) + data[data.index(b"\n\n") + 2:]


def _nifti_bytes() -> bytes:
    import nibabel as nib

    image = nib.Nifti1Image(np.arange(120, dtype=np.int16).reshape(4, 5, 6), np.eye(4))
    return image.to_bytes()


def _nifti_huge(data: bytes, pick: int) -> bytes:
    """dim[0..3] at byte 40 of the 348-byte header (little endian int16)."""
    dims = ((3, 32767, 32767, 32767), (3, 30000, 30000, 2), (7, 32767, 32767, 32767),
            (3, -5, 5, 6))[pick % 4]
    return data[:40] + struct.pack("<4h", *dims) + data[48:]


def _csv_bytes() -> bytes:
    rng = np.random.default_rng(0)
    lines = ["label," + ",".join(f"pixel{i}" for i in range(16))]
    for row in range(5):
        lines.append(f"{row % 3}," + ",".join(str(v) for v in rng.integers(0, 17, 16)))
    return ("\n".join(lines) + "\n").encode()


def _csv_huge(data: bytes, pick: int) -> bytes:
    """Very many columns or a huge number in a cell."""
    if pick % 2:
        return ("label," + ",".join(f"pixel{i}" for i in range(2500)) + "\n1,"
                + ",".join("0" for _ in range(2500)) + "\n").encode()
    return data.replace(b"\n1,", b"\n1," + b"9" * 400 + b"e99999,", 1)


YAML_TEXT = """experiment: fuzz
seed: 1
data:
  source: pixel_csv
  train_csv: train.csv
  pixel_scale: 16
  batch_size: 32
model:
  name: simple_nn
  kwargs: {hidden_sizes: [32], dropout: 0.1}
optimizer: {name: adam, lr: 0.01}
trainer:
  max_epochs: 2
  progress_bar: false
"""


def _yaml_huge(data: bytes, pick: int) -> bytes:
    """A billion-laughs alias bomb, or a huge number / deep nesting in a field."""
    if pick % 3 == 0:
        lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
        lines += [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, "
                  f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]"
                  for i in range(9)]
        return data + ("\n".join(lines) + "\nmodel: {name: simple_nn, kwargs: {x: *j}}\n"
                       ).encode()
    if pick % 3 == 1:
        return data.replace(b"max_epochs: 2", b"max_epochs: 1" + b"0" * 5000)
    return data.replace(b"seed: 1", b"seed: " + b"[" * 5000 + b"]" * 5000)


def _read_image(path: Path) -> object:
    from medilab.io.reader import read_image

    return read_image(path)


def _read_pixels(path: Path) -> object:
    from medilab.data.formats.pixel_tables import read_pixel_csv

    return read_pixel_csv(path, labelled=True, pixel_scale=16)


def _read_config(path: Path) -> object:
    from medilab.config import load_config

    # train_csv is relative to the working folder; a missing file is not checked here
    return load_config(path)


def seeds() -> list[Seed]:
    """One valid file per reader (the DICOM is pydicom's CT_small.dcm)."""
    return [
        Seed("png", ".png", _png_bytes(), _read_image, _png_huge),
        Seed("dicom", ".dcm", _dicom_bytes(), _read_image, _dicom_huge),
        Seed("nrrd", ".nrrd", _nrrd_bytes(), _read_image, _nrrd_huge),
        Seed("nifti", ".nii", _nifti_bytes(), _read_image, _nifti_huge),
        Seed("csv", ".csv", _csv_bytes(), _read_pixels, _csv_huge),
        Seed("yaml", ".yaml", YAML_TEXT.encode(), _read_config, _yaml_huge),
    ]


def warm_up(folder: Path) -> None:
    """Read every valid seed once without a memory limit, so that the libraries readers import
    lazily (torch for configs) are loaded before ``memory_limit`` applies."""
    for seed in seeds():
        check(seed, seed.data, folder, limit=False)


def truncate(data: bytes, at: int) -> bytes:
    return data[: at % (len(data) + 1)]


def flip(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    """Set the byte at each position (modulo the length) to the given value."""
    out = bytearray(data)
    for position, value in changes:
        if out:
            out[position % len(out)] = value
    return bytes(out)


def random_mutation(seed: Seed, rng: random.Random) -> tuple[str, bytes]:
    """A truncation, some byte flips, a huge declared size or a mix (for the long fuzzer)."""
    kind = rng.choice(("truncate", "flip", "huge", "huge+flip"))
    if kind == "truncate":
        return kind, truncate(seed.data, rng.randrange(len(seed.data)))
    changes = [(rng.randrange(1 << 20), rng.randrange(256)) for _ in range(rng.randint(1, 8))]
    if kind == "flip":
        return kind, flip(seed.data, changes)
    huge = seed.huge(seed.data, rng.randrange(12))
    return kind, huge if kind == "huge" else flip(huge, changes[:2])


@contextlib.contextmanager
def memory_limit(headroom: int = MEMORY_HEADROOM) -> Iterator[None]:
    """Limit this process's address space to its current size plus ``headroom`` (restored
    afterwards; soft limits may be raised again up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as handle:
        mapped = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = mapped + headroom
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class ReaderCrash(AssertionError):
    """A reader raised something other than ``MedilabError`` (or returned garbage)."""


def check(seed: Seed, data: bytes, folder: Path, limit: bool = True) -> str:
    """Write ``data`` as a file of ``seed``'s format and read it; returns ``"ok"`` or
    ``"refused"``, raises ``ReaderCrash`` for any other outcome."""
    path = folder / f"input{seed.suffix}"
    path.write_bytes(data)
    try:
        with memory_limit() if limit else contextlib.nullcontext():
            result = seed.read(path)
    except MedilabError as exc:  # config errors list every problem, one per line
        if "\n" in str(exc).strip() and not isinstance(exc, ConfigError):
            raise ReaderCrash(f"{seed.name}: multi-line error {str(exc)[:200]!r}") from exc
        return "refused"
    except BaseException as exc:  # noqa: BLE001 - anything else is what we look for
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ReaderCrash(f"{seed.name}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    _check_result(seed, result)
    return "ok"


def _check_result(seed: Seed, result: object) -> None:
    from medilab.io.image_data import ImageData

    if seed.name in ("csv", "yaml"):
        return  # typed results: the reader's own validation made them
    if not isinstance(result, ImageData) or not isinstance(result.array, np.ndarray):
        raise ReaderCrash(f"{seed.name}: returned {type(result).__name__}, not ImageData")
    if result.array.size == 0:
        raise ReaderCrash(f"{seed.name}: returned an empty array {result.array.shape}")
