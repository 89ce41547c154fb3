"""Segmentation data: folder layouts, mask conventions, size checks, split, patches, augment."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from PIL import Image

from medilab.config import validate_config
from medilab.data.datamodules.segmentation import (
    PatchDataset,
    prepare_image,
    prepare_mask,
)
from medilab.data.sources.segmentation_folder import SegmentationFolderSource
from medilab.data.splits import training_splits
from medilab.errors import InputFileError, MedilabError
from segmentation_samples import bar_sample

build_datamodule = SegmentationFolderSource().build_datamodule

DATA = Path(os.environ.get(
    "MEDILAB_DATA", Path(__file__).resolve().parents[3].parent / "shared" / "data"))


def config(root, **data):
    raw = {"task": "segmentation", "model": {"name": "unet"},
           "data": {"source": "segmentation_folder", "root": str(root), **data}}
    return validate_config(raw)


def write_drive(root: Path, n: int = 4, size=(30, 26)) -> Path:
    """DRIVE layout: RGB tif images, GIF vessel masks (255) and GIF fields of view."""
    for folder in ("images", "1st_manual", "mask"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(21, 21 + n):
        rgb = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        tifffile.imwrite(root / "images" / f"{i}_training.tif", rgb)
        vessel = np.zeros(size, np.uint8)
        vessel[:, 5 + i % 4] = 255
        Image.fromarray(vessel).save(root / "1st_manual" / f"{i}_manual1.gif")
        fov = np.zeros(size, np.uint8)
        fov[2:-2, 2:-2] = 255
        Image.fromarray(fov).save(root / "mask" / f"{i}_training_mask.gif")
    return root


def test_drive_layout_pairs_masks_and_field_of_view(tmp_path):
    root = write_drive(tmp_path / "drive")
    dm = build_datamodule(config(root, channels="green", val_count=1, normalize="none"), None)
    assert sorted(dm.samples) == ["21_training", "22_training", "23_training", "24_training"]
    sample = dm.samples["22_training"]
    raw = tifffile.imread(root / "images" / "22_training.tif")
    assert sample.image.shape == (1, 30, 26)
    np.testing.assert_allclose(sample.image[0], raw[..., 1] / 255, atol=1e-6)  # green
    assert sample.mask.dtype == np.int64 and sample.mask.sum() == 30
    assert np.flatnonzero(sample.mask[0]).tolist() == [7]
    assert sample.valid.sum() == 26 * 22 and sample.valid[0, 0] == 0
    assert dm.in_channels == 1 and dm.num_classes == 2
    assert list(dm.splits.columns) == ["sample_id", "split", "image"]
    assert (dm.splits["split"] == "val").sum() == 1
    assert set(dm.splits["image"]) == {f"{i}_training.tif" for i in range(21, 25)}


def test_rgb_and_grey_channels(tmp_path):
    root = write_drive(tmp_path / "drive", n=2)
    rgb = build_datamodule(config(root, channels="rgb", val_count=1), None)
    grey = build_datamodule(config(root, channels="grey", val_count=1), None)
    assert rgb.in_channels == 3 and grey.in_channels == 1
    image = rgb.samples["21_training"].image
    assert abs(image.mean()) < 1e-5 and abs(image.std() - 1) < 1e-4  # z-scored


def test_isbi_membrane_is_the_foreground(tmp_path):
    root = tmp_path / "isbi"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8), 100, np.uint8)).save(root / "images" / f"{i:02d}.png")
        label = np.full((8, 8), 255, np.uint8)
        label[3] = 0  # one membrane row
        Image.fromarray(label).save(root / "labels" / f"{i:02d}.png")
    dm = build_datamodule(config(root, layout="isbi", val_count=1), None)
    mask = dm.samples["01"].mask
    assert mask.sum() == 8 and mask[3].tolist() == [1] * 8
    kept = build_datamodule(config(root, layout="isbi", val_count=1, invert_mask=False), None)
    assert kept.samples["01"].mask.sum() == 56


def test_mask_of_another_size_names_the_file(tmp_path):
    root = write_drive(tmp_path / "drive", n=2)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "1st_manual" / "22_manual1.gif")
    with pytest.raises(InputFileError) as info:
        build_datamodule(config(root, val_count=1), None)
    message = str(info.value)
    assert "22_manual1.gif" in message and "differs from its image 22_training.tif" in message
    assert "\n" not in message


def test_missing_mask_names_the_image(tmp_path):
    root = write_drive(tmp_path / "drive", n=3)
    (root / "1st_manual" / "23_manual1.gif").unlink()
    with pytest.raises(InputFileError, match="23_training.tif: no file with key '23'"):
        build_datamodule(config(root, val_count=1), None)


def test_manifest_source_and_multiclass_masks(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((6, 5), 9, np.uint8)).save(tmp_path / f"img{i}.png")
        np.save(tmp_path / f"lab{i}.npy", np.arange(30).reshape(6, 5) % 3)
    pd.DataFrame({"image": [f"img{i}.png" for i in range(3)],
                  "mask": [f"lab{i}.npy" for i in range(3)]}).to_csv(tmp_path / "m.csv",
                                                                    index=False)
    dm = build_datamodule(config(tmp_path, manifest="m.csv", num_classes=3, val_count=1), None)
    assert dm.num_classes == 3
    assert sorted(np.unique(dm.samples["img0"].mask).tolist()) == [0, 1, 2]
    assert prepare_mask(np.array([[0, 2, 255]])).tolist() == [[0, 1, 1]]  # binary: > 0
    with pytest.raises(InputFileError, match="lab.npy: mask values 0..3 outside 0..2"):
        prepare_mask(np.array([[0, 3]]), num_classes=3, path="lab.npy")


def test_split_is_seeded_and_saved_splits_are_reused(tmp_path):
    table = pd.DataFrame({"sample_id": [f"{i:02d}" for i in range(20)]})
    first = training_splits(table, val_count=5, seed=7)
    assert first.equals(training_splits(table, val_count=5, seed=7))
    assert (first["split"] == "val").sum() == 5
    assert not first.equals(training_splits(table, val_count=5, seed=8))
    assert (training_splits(table, val_fraction=0.25, seed=7)["split"] == "val").sum() == 5
    with pytest.raises(MedilabError, match="val_count"):
        training_splits(table.head(2), val_count=2, seed=0)
    root = write_drive(tmp_path / "drive", n=3)
    given = pd.DataFrame({"sample_id": ["21_training", "22_training", "23_training"],
                          "split": ["val", "train", "train"]})
    dm = build_datamodule(config(root), given)
    assert [s.sample_id for s in dm.split_samples("val")] == ["21_training"]


def test_patches_have_the_patch_size_and_pad_small_images():
    torch.manual_seed(0)
    dataset = PatchDataset([bar_sample()], [8, 8], patches_per_image=5)
    assert len(dataset) == 5
    for k in range(5):
        item = dataset[k]
        assert item["image"].shape == (1, 8, 8) and item["mask"].shape == (8, 8)
        assert torch.equal(item["image"][0] > 0, item["mask"].bool())
    small = PatchDataset([bar_sample((4, 12))], [8, 8], patches_per_image=1)[0]
    assert small["valid"].sum() == 4 * 8 and small["valid"][4:].sum() == 0
    assert small["mask"][4:].sum() == 0



def test_prepare_image_channel_choices():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 1] = 255
    assert prepare_image(rgb, "green", normalize="none").tolist() == np.ones((1, 4, 5)).tolist()
    grey = prepare_image(rgb, "grey", normalize="none")
    np.testing.assert_allclose(grey, 1 / 3, atol=1e-6)  # the plain mean (data.transforms.prep)
    assert prepare_image(np.zeros((4, 5), np.uint16), "rgb").shape == (3, 4, 5)
    assert prepare_image(np.zeros((3, 4, 5)), spatial_dims=3).shape == (1, 3, 4, 5)
    with pytest.raises(InputFileError, match="x.png: expected a 2D image"):
        prepare_image(np.zeros((2, 3, 4, 5)), path="x.png")


@pytest.mark.data
@pytest.mark.skipif(not (DATA / "drive" / "training").is_dir(), reason="no DRIVE data")
def test_real_drive_training_set():
    dm = build_datamodule(config(DATA / "drive" / "training", val_count=5), None)
    assert len(dm.samples) == 20 and (dm.splits["split"] == "val").sum() == 5
    sample = dm.samples["21_training"]
    assert sample.image.shape == (3, 584, 565) and sample.mask.shape == (584, 565)
    assert 0.05 < sample.mask.mean() < 0.2 and 0.6 < sample.valid.mean() < 0.75
