"""Decoded-image cache in the file-based sources: the second read decodes nothing, a changed
file or changed settings decode again, cached and uncached pixels are identical, and
``data.cache: false`` writes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import nrrd
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medilab.config import check_data_paths, validate_config
from medilab.data.cache import ArrayCache, data_cache, default_cache_dir
from medilab.data.datamodules import detection, segmentation
from medilab.data.datamodules.detection import DetectionDataModule, DetectionImages, Preprocess
from medilab.data.sources import image_table, slice_table
from medilab.data.sources.image_table import ImageTableSource, read_images
from medilab.data.transforms.prep import ImagePrep, PrepConfig
from medilab.errors import ConfigError, MedilabError
from segmentation_samples import circles_config, write_circles


class Counting:
    """Wraps a reader and counts the files it decodes."""

    def __init__(self, reader):
        self.reader, self.calls = reader, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.reader(*args, **kwargs)


def count_reads(monkeypatch, module, name="read_array") -> Counting:
    counter = Counting(getattr(module, name))
    monkeypatch.setattr(module, name, counter)
    return counter


def touch_later(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def entries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.npy")) if root.exists() else []


# ----------------------------------------------------------------------------- the folder
def test_cache_folder_from_env_else_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDILAB_CACHE_DIR", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    assert ArrayCache().root == tmp_path / "here"
    monkeypatch.delenv("MEDILAB_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "medilab" / "arrays"


def test_data_section_switches_and_places_the_cache(tmp_path):
    on = validate_config({"data": {"source": "sklearn_digits", "cache_dir": str(tmp_path / "c")},
                          "model": {"name": "simple_nn"}}).data
    assert on.cache and data_cache(on).root == tmp_path / "c"
    off = on.model_copy(update={"cache": False})
    assert data_cache(off) is None


def test_a_cache_folder_that_does_not_exist_yet_is_not_a_missing_path(tmp_path):
    root = _table(tmp_path / "data")
    check_data_paths(_table_config(root, cache_dir=str(tmp_path / "made" / "later")))
    with pytest.raises(ConfigError, match="data.root"):
        check_data_paths(_table_config(tmp_path / "nowhere"))


def test_unwritable_folder_warns_once_and_still_returns_pixels(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    source = tmp_path / "a.txt"
    source.write_text("x")
    cache = ArrayCache(blocker / "cache")
    with pytest.warns(UserWarning, match="cannot be written"):
        first = cache.get(source, {}, lambda: np.arange(3))
    second = cache.get(source, {"p": 1}, lambda: np.arange(4))
    assert first.tolist() == [0, 1, 2] and second.tolist() == [0, 1, 2, 3]


# ----------------------------------------------------------------------------- detection
def _write(path: Path, height: int, width: int, box: list[int] | None) -> str:
    array = np.full((height, width), 20, np.uint8)
    if box:
        x1, y1, x2, y2 = box
        array[y1:y2, x1:x2] = 230
    Image.fromarray(array).save(path)
    return str(path)


@pytest.fixture
def boxes_manifest(tmp_path: Path) -> pd.DataFrame:
    rows = [("a", 100, 60, [[10, 20, 40, 44]]), ("b", 80, 80, []), ("c", 64, 96,
                                                                      [[10, 30, 40, 50]])]
    return pd.DataFrame([{"sample_id": s, "image": _write(tmp_path / f"{s}.png", h, w,
                                                          b[0] if b else None),
                          "boxes": b, "box_labels": ["x"] * len(b), "split": "train"}
                         for s, h, w, b in rows])


def _items(dataset) -> list:
    return [dataset[i] for i in range(len(dataset))]


def _same(a, b) -> None:
    for (image_a, target_a), (image_b, target_b) in zip(a, b, strict=True):
        assert torch.equal(image_a, image_b)
        for key in target_a:
            assert torch.equal(target_a[key], target_b[key]), key


def test_detection_second_epoch_reads_no_file(monkeypatch, tmp_path, boxes_manifest):
    reads = count_reads(monkeypatch, detection)
    cache = ArrayCache(tmp_path / "cache")
    dm = DetectionDataModule(boxes_manifest, boxes_manifest[["sample_id", "split"]],
                             prep=Preprocess(size=32), batch_size=2, num_workers=0, cache=cache)
    epoch1 = [b for b in dm.train_dataloader()]
    assert reads.calls == 3 and cache.misses == 6  # pixels + original shape per image
    epoch2 = [b for b in dm.train_dataloader()]
    assert reads.calls == 3 and cache.hits == 6
    assert sum(len(images) for images, _ in epoch1) == sum(len(i) for i, _ in epoch2) == 3


def test_detection_cached_equals_uncached(monkeypatch, tmp_path, boxes_manifest):
    prep = Preprocess(size=40, channels=3)
    plain = _items(DetectionImages(boxes_manifest, ["x"], prep))
    cache = ArrayCache(tmp_path / "cache")
    first = _items(DetectionImages(boxes_manifest, ["x"], prep, cache=cache))
    reads = count_reads(monkeypatch, detection)
    again = _items(DetectionImages(boxes_manifest, ["x"], prep, cache=cache))
    assert reads.calls == 0
    _same(plain, first)
    _same(plain, again)
    assert again[0][1]["orig_size"].tolist() == [100, 60]


def test_detection_changed_settings_or_file_decode_again(monkeypatch, tmp_path, boxes_manifest):
    cache = ArrayCache(tmp_path / "cache")
    _items(DetectionImages(boxes_manifest, ["x"], Preprocess(size=32), cache=cache))
    reads = count_reads(monkeypatch, detection)
    resized = _items(DetectionImages(boxes_manifest, ["x"], Preprocess(size=48), cache=cache))
    assert reads.calls == 3 and resized[0][0].shape == (1, 48, 48)
    _write(Path(boxes_manifest.at[1, "image"]), 30, 50, None)  # b is replaced by a new image
    touch_later(Path(boxes_manifest.at[1, "image"]))
    data = DetectionImages(boxes_manifest, ["x"], Preprocess(size=48), cache=cache)
    assert data[1][1]["orig_size"].tolist() == [30, 50] and reads.calls == 4


def test_detection_boxes_still_checked_against_the_cached_shape(tmp_path, boxes_manifest):
    cache = ArrayCache(tmp_path / "cache")
    outside = boxes_manifest.copy()
    outside.at[0, "boxes"] = [[10, 20, 70, 44]]  # the image is 60 wide
    DetectionImages(boxes_manifest, ["x"], Preprocess(size=32), cache=cache)[0]  # now cached
    data = DetectionImages(outside, ["x"], Preprocess(size=32), cache=cache)
    with pytest.raises(MedilabError, match="outside the 60x100 image"):
        data[0]
    assert cache.hits >= 1


# ----------------------------------------------------------------------------- image_table
def _table(root: Path, n: int = 6) -> Path:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (12, 10)).astype(np.uint8)).save(
            root / "images" / f"i{i}.png")
        rows.append({"image": f"i{i}.png", "patient_id": f"p{i}", "label": "ab"[i % 2]})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def _table_config(root: Path, **data):
    return validate_config({"task": "classification", "model": {"name": "convnet"},
                            "data": {"source": "image_table", "root": str(root),
                                     "val_fraction": 0.34, **data}})


def test_image_table_second_build_decodes_nothing(monkeypatch, tmp_path):
    root = _table(tmp_path / "data")
    config = _table_config(root, prep={"size": [8, 8], "log": True})
    reads = count_reads(monkeypatch, image_table)
    first = ImageTableSource().build_datamodule(config, None).arrays.images
    assert reads.calls == 6 and len(entries(default_cache_dir())) >= 6
    second = ImageTableSource().build_datamodule(config, None).arrays.images
    assert reads.calls == 6
    uncached = ImageTableSource().build_datamodule(
        _table_config(root, prep={"size": [8, 8], "log": True}, cache=False), None).arrays.images
    assert reads.calls == 12
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, uncached)


def test_cache_off_writes_nothing(tmp_path):
    root = _table(tmp_path / "data")
    folder = tmp_path / "never"
    ImageTableSource().build_datamodule(
        _table_config(root, cache=False, cache_dir=str(folder)), None)
    assert not folder.exists()
    ImageTableSource().build_datamodule(_table_config(root, cache_dir=str(folder)), None)
    assert len(entries(folder)) == 6


def test_image_table_changed_prep_or_file_decode_again(monkeypatch, tmp_path):
    root = _table(tmp_path / "data")
    paths = [str(root / "images" / f"i{i}.png") for i in range(6)]
    cache = ArrayCache(tmp_path / "cache")
    read_images(paths, ImagePrep(PrepConfig(size=[8, 8])), cache=cache)
    reads = count_reads(monkeypatch, image_table)
    read_images(paths, ImagePrep(PrepConfig(size=[6, 6])), cache=cache)
    assert reads.calls == 6
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(paths[0])
    touch_later(Path(paths[0]))
    images, _ = read_images(paths, ImagePrep(PrepConfig(size=[6, 6])), cache=cache)
    assert reads.calls == 7 and float(np.abs(images[0]).max()) == 0.0


def test_image_table_missing_file_error_is_unchanged(tmp_path):
    prep = ImagePrep(PrepConfig())
    missing = str(tmp_path / "gone.png")
    _, plain = read_images([missing], prep, strict=False)
    _, via_cache = read_images([missing], prep, strict=False, cache=ArrayCache(tmp_path / "c"))
    assert plain == via_cache and plain[0]


# ----------------------------------------------------------------------------- segmentation
def test_segmentation_samples_are_served_from_the_cache(monkeypatch, tmp_path):
    from medilab.data.sources.segmentation_folder import SegmentationFolderSource

    root = write_circles(tmp_path / "circles", n=4)
    config = validate_config(circles_config(root))
    reads = count_reads(monkeypatch, segmentation)
    first = SegmentationFolderSource().build_datamodule(config, None)
    assert reads.calls == 8  # image + mask of each pair
    second = SegmentationFolderSource().build_datamodule(config, None)
    assert reads.calls == 8
    off = validate_config(circles_config(root, data={**circles_config(root)["data"],
                                                      "cache": False}))
    uncached = SegmentationFolderSource().build_datamodule(off, None)
    assert reads.calls == 16
    for sid, sample in uncached.samples.items():
        for other in (first.samples[sid], second.samples[sid]):
            for name in ("image", "mask", "valid", "display"):
                np.testing.assert_array_equal(getattr(sample, name), getattr(other, name))
            assert other.image.flags.writeable  # an in-memory copy, not the memory map


# ----------------------------------------------------------------------------- slice_table
def test_slice_table_volumes_are_decoded_once(monkeypatch, tmp_path):
    root = tmp_path / "mri"
    root.mkdir()
    for v in range(2):
        volume = np.arange(5 * 6 * 6, dtype=np.float32).reshape(5, 6, 6) * (v + 1)
        labels = np.zeros((5, 6, 6), np.uint8)
        labels[1:3, 2:4, 2:4] = 1
        nrrd.write(str(root / f"v{v}_image.nrrd"), volume.T)
        nrrd.write(str(root / f"v{v}_label.nrrd"), labels.T)
    data = validate_config({"task": "classification", "model": {"name": "convnet"},
                            "data": {"source": "slice_table", "root": str(root),
                                     "size": [4, 4]}}).data
    cache = ArrayCache(tmp_path / "cache")
    reads = count_reads(monkeypatch, slice_table, "_volume")
    first, table = slice_table.slice_arrays(data, cache)
    assert reads.calls == 4  # two volumes, two label maps
    second, again = slice_table.slice_arrays(data, cache)
    assert reads.calls == 4
    plain, _ = slice_table.slice_arrays(data)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.images, plain.images)
    assert first.labels.tolist() == second.labels.tolist() == [0, 1, 1, 0, 0] * 2
    pd.testing.assert_frame_equal(table, again)
