"""2D rasters, numpy files, write_png and the read_image dispatcher."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from medilab.errors import InputFileError, MedilabError
from medilab.io.images import read_numpy, write_npz, write_png
from medilab.io.reader import read_image, reader_for


def test_png_8_and_16_bit_round_trip(tmp_path: Path) -> None:
    gray16 = (np.arange(12 * 10).reshape(12, 10) * 500).astype(np.uint16)
    write_png(tmp_path / "a16.png", gray16, bits=16)
    back = read_image(tmp_path / "a16.png").array
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, gray16)
    ramp = np.linspace(0, 1, 11, dtype=np.float32)[None].repeat(3, 0)
    write_png(tmp_path / "f8.png", ramp)
    back = read_image(tmp_path / "f8.png")
    assert back.array.dtype == np.uint8 and back.spacing is None
    np.testing.assert_array_equal(back.array[0], np.rint(np.linspace(0, 255, 11)))
    write_png(tmp_path / "f16.png", ramp, bits=16)
    assert read_image(tmp_path / "f16.png").array.max() == 65535
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    write_png(tmp_path / "rgb.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png").array, rgb)
    write_png(tmp_path / "mask.png", np.eye(4, dtype=bool))
    assert read_image(tmp_path / "mask.png").array.max() == 255
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a16.png", "f16.png", "f8.png", "mask.png", "rgb.png"]


def test_write_png_refuses_bad_values(tmp_path: Path) -> None:
    with pytest.raises(MedilabError, match=r"\[0, 1\]"):
        write_png(tmp_path / "x.png", np.array([[0.0, 2.0]]))
    with pytest.raises(MedilabError, match=r"\[0, 255\]"):
        write_png(tmp_path / "x.png", np.array([[0, 300]], dtype=np.int32))
    with pytest.raises(MedilabError, match="grayscale"):
        write_png(tmp_path / "x.png", np.zeros((2, 2, 3), np.uint16), bits=16)
    with pytest.raises(MedilabError, match="bits"):
        write_png(tmp_path / "x.png", np.zeros((2, 2)), bits=12)
    assert not list(tmp_path.iterdir())


def test_gif_jpeg_tiff(tmp_path: Path) -> None:
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[5:15, 10:20] = 255
    Image.fromarray(mask).convert("P").save(tmp_path / "m.gif")
    gif = read_image(tmp_path / "m.gif").array
    assert gif.shape == (20, 30) and set(np.unique(gif)) == {0, 255}
    colour = np.zeros((8, 8, 3), dtype=np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "c.gif")
    assert read_image(tmp_path / "c.gif").array.shape == (8, 8, 3)
    Image.fromarray(np.full((16, 16), 120, np.uint8)).save(tmp_path / "x.jpg", quality=95)
    jpg = read_image(tmp_path / "x.jpg").array
    assert jpg.shape == (16, 16) and abs(int(jpg.mean()) - 120) <= 1
    vol16 = np.arange(2 * 4 * 5, dtype=np.uint16).reshape(2, 4, 5) * 1000
    tifffile.imwrite(tmp_path / "v.tif", vol16)
    np.testing.assert_array_equal(read_image(tmp_path / "v.tif").array, vol16)
    Image.fromarray(colour).save(tmp_path / "lzw.tiff", compression="tiff_lzw")
    np.testing.assert_array_equal(read_image(tmp_path / "lzw.tiff").array, colour)


def test_real_drive_files(medilab_data: Path) -> None:
    folder = medilab_data / "drive" / "training"
    if not folder.is_dir():
        pytest.skip("DRIVE not present")
    manual = read_image(folder / "1st_manual" / "21_manual1.gif").array
    assert manual.shape == (584, 565) and set(np.unique(manual)) <= {0, 255}
    rgb = read_image(folder / "images" / "21_training.tif").array
    assert rgb.shape == (584, 565, 3) and rgb.dtype == np.uint8


def test_numpy_files(tmp_path: Path) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "a.npy", a)
    np.testing.assert_array_equal(read_image(tmp_path / "a.npy").array, a)
    write_npz(tmp_path / "v.npz", a[None], spacing=(2.0, 1.0, 1.0))
    loaded = read_image(tmp_path / "v.npz")
    np.testing.assert_array_equal(loaded.array, a[None])
    assert loaded.spacing == (2.0, 1.0, 1.0)
    np.savez(tmp_path / "two.npz", x=a, y=a * 2)
    with pytest.raises(InputFileError, match="choose one with key="):
        read_numpy(tmp_path / "two.npz")
    np.testing.assert_array_equal(read_image(tmp_path / "two.npz", key="y").array, a * 2)


def test_dispatcher(tmp_path: Path, dicom_file) -> None:
    ct = dicom_file("CT_small.dcm")
    shutil.copy(ct, tmp_path / "IM000001")  # no suffix
    shutil.copy(ct, tmp_path / "1.2.840.113619.2.1")  # UID-like name: DICM magic decides
    assert read_image(tmp_path / "IM000001").meta["modality"] == "CT"
    assert read_image(tmp_path / "1.2.840.113619.2.1").meta["format"] == "dicom"
    assert read_image(ct, standardise=True, output="uint8").array.dtype == np.uint8
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputFileError, match="unsupported image format '.txt'"):
        read_image(tmp_path / "notes.txt")
    with pytest.raises(InputFileError, match="no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(MedilabError, match="do not apply"):
        read_image(ct, key="x")
    assert reader_for(tmp_path).__name__ == "read_dicom_series"


def test_text_file_named_npz_or_npy_never_suggests_unsafe_loading(tmp_path: Path) -> None:
    from medilab.io.images import open_npz

    fake = tmp_path / "fake.npz"
    fake.write_text("label,pixel0\n1,2\n")
    for call in (lambda: open_npz(fake), lambda: read_numpy(fake), lambda: read_image(fake)):
        with pytest.raises(InputFileError) as info:
            call()
        assert str(info.value) == f"{fake}: not a valid npz file"
    fake_npy = tmp_path / "fake.npy"
    fake_npy.write_text("hello")
    with pytest.raises(InputFileError, match="not a valid npy file") as info:
        read_numpy(fake_npy)
    assert "pickle" not in str(info.value).lower().replace("python objects", "")
    assert "unsafe" not in str(info.value) and "allow_pickle" not in str(info.value)


def test_object_arrays_in_npz_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, array=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputFileError) as info:
        read_numpy(path)
    assert str(info.value) == (
        f"{path}: array 'array' holds Python objects; only plain numeric arrays are read"
    )
