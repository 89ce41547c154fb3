"""MedMNIST npz: 2D and 3D, any splits present (no test keys needed)."""

from __future__ import annotations

import numpy as np
import pytest

from medilab.data.formats import load_medmnist, medmnist_manifest, read_array
from medilab.errors import InputFileError


def _write(path, shape, splits=("train", "val")):
    rng = np.random.default_rng(0)
    arrays = {}
    for i, split in enumerate(splits):
        n = 4 + i
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return arrays


def test_npz_without_test_keys(tmp_path):
    arrays = _write(tmp_path / "tiny.npz", (28, 28))
    splits = load_medmnist(tmp_path / "tiny.npz")
    assert list(splits) == ["train", "val"]
    assert splits["val"].labels.tolist() == [0, 1, 0, 1, 0]
    manifest = medmnist_manifest(tmp_path / "tiny.npz")
    assert len(manifest) == 9
    assert manifest["split"].value_counts().to_dict() == {"val": 5, "train": 4}
    assert manifest["sample_id"].iloc[4] == "val_0"
    np.testing.assert_array_equal(read_array(manifest["image"].iloc[5]), arrays["val_images"][1])


def test_3d_any_size(tmp_path):
    _write(tmp_path / "vol.npz", (6, 5, 4), splits=("train", "val", "test"))
    manifest = medmnist_manifest(tmp_path / "vol.npz")
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert read_array(manifest["image"].iloc[0]).shape == (6, 5, 4)


def test_missing_labels_is_an_error(tmp_path):
    np.savez(tmp_path / "bad.npz", train_images=np.zeros((2, 4, 4)))
    with pytest.raises(InputFileError, match="bad.npz: 'train_images' has no 'train_labels'"):
        load_medmnist(tmp_path / "bad.npz")


def test_real_breastmnist(medilab_data):
    manifest = medmnist_manifest(medilab_data / "medmnist" / "breastmnist.npz")
    assert manifest["split"].value_counts().to_dict() == {"train": 546, "val": 78}
    assert read_array(manifest["image"].iloc[0]).shape == (28, 28)
