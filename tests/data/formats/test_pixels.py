"""``read_array`` / ``read_image`` of manifest entries, and npz files that are not npz files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medilab.data.formats import pixels as loader
from medilab.data.formats.medmnist import load_medmnist
from medilab.data.formats.pixels import npz_reference, read_array
from medilab.errors import InputFileError


def test_npz_reference_and_plain_file(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    np.savez(tmp_path / "m.npz", train_images=images, train_labels=np.array([[0], [1]]))
    np.testing.assert_array_equal(read_array(npz_reference(tmp_path / "m.npz", "train", 1)),
                                  images[1])
    np.save(tmp_path / "a.npy", images[0])
    np.testing.assert_array_equal(read_array(tmp_path / "a.npy"), images[0])
    assert not hasattr(loader, "_fallback_read")


def test_text_renamed_npz_is_one_line_error_without_unsafe_advice(tmp_path: Path) -> None:
    fake = tmp_path / "breast.npz"
    fake.write_text("image,label\na.png,1\n")
    for call in (lambda: load_medmnist(fake), lambda: read_array(f"{fake}::train::0")):
        with pytest.raises(InputFileError) as info:
            call()
        assert str(info.value) == f"{fake}: not a valid npz file"
    missing = tmp_path / "m2.npz"
    np.savez(missing, train_images=np.zeros((1, 2, 2)), train_labels=np.zeros((1, 1)))
    with pytest.raises(InputFileError, match=r"no array 'val_images' \(has train_images, "):
        read_array(f"{missing}::val::0")
