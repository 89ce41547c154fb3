from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medilab.config import AugmentConfig
from medilab.data.datamodules.detection import (
    DetectionDataModule,
    DetectionImages,
    Preprocess,
    boxes_to_original,
    check_boxes,
    prediction_rows,
    prepare_for_prediction,
    prepare_pixels,
)
from medilab.errors import MedilabError


def _write(path: Path, height: int, width: int, boxes: list[list[int]]) -> str:
    """A dark image with a bright filled rectangle inside every box."""
    array = np.full((height, width), 20, np.uint8)
    for x1, y1, x2, y2 in boxes:
        array[y1:y2, x1:x2] = 230
    Image.fromarray(array).save(path)
    return str(path)


def _bright_box(image: torch.Tensor) -> list[float]:
    """The pixel-edge bounding box of the bright pixels of a (1, H, W) image."""
    ys, xs = np.nonzero(image[0].numpy() > 0.5)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


@pytest.fixture
def manifest(tmp_path: Path) -> pd.DataFrame:
    rows = [
        ("a", 100, 60, [[10, 20, 40, 44]], ["Active"]),
        ("b", 80, 80, [[50, 10, 70, 30], [5, 5, 25, 25]], ["Obsolete", "Active"]),
        ("c", 80, 80, [], []),  # healthy
        ("d", 64, 96, [[10, 30, 40, 50]], ["Active"]),
    ]
    return pd.DataFrame([
        {"sample_id": sid, "image": _write(tmp_path / f"{sid}.png", h, w, boxes),
         "boxes": boxes, "box_labels": labels}
        for sid, h, w, boxes, labels in rows
    ])


def test_resize_keeps_boxes_on_the_objects_and_maps_back(manifest: pd.DataFrame) -> None:
    data = DetectionImages(manifest, ["Active", "Obsolete"], Preprocess(size=64))
    image, target = data[0]  # 100 x 60 (H x W) → scaled by 0.64, padded left/right
    assert image.shape == (1, 64, 64)
    assert target["labels"].tolist() == [1]
    assert target["boxes"][0].tolist() == pytest.approx(_bright_box(image), abs=1)
    back = boxes_to_original(target["boxes"], target["resize"].tolist(), (100, 60))
    assert back[0].tolist() == pytest.approx([10, 20, 40, 44], abs=1e-4)
    _, negative = data[2]
    assert negative["boxes"].shape == (0, 4) and negative["labels"].numel() == 0


@pytest.mark.parametrize("hflip", [False, True])
def test_augmentation_moves_boxes_with_the_image(manifest: pd.DataFrame, hflip: bool) -> None:
    augment = AugmentConfig(hflip=hflip, translate=0.1, scale=0.1, brightness=0.2, contrast=0.2)
    data = DetectionDataModule(
        manifest, pd.DataFrame({"sample_id": list("abcd"), "split": "train"}),
        prep=Preprocess(size=96), augment=augment,
    ).dataset("train")
    torch.manual_seed(0)
    flipped = False
    for _ in range(6):
        image, target = data[3]  # one box 30x20 in a 64 x 96 image
        assert len(target["boxes"]) == 1
        assert target["boxes"][0].tolist() == pytest.approx(_bright_box(image), abs=1.5)
        original = boxes_to_original(target["boxes"], target["resize"].tolist())[0]
        flipped |= (original[0] + original[2]) / 2 > 48  # the box started at x 10..40
    assert flipped == hflip


def test_validation_and_prediction_preprocess_alike(manifest: pd.DataFrame) -> None:
    prep = Preprocess(size=64, log=True, color_balance=2.0)
    image, target = DetectionImages(manifest, ["Active", "Obsolete"], prep)[3]
    tensor, info = prepare_for_prediction(manifest.at[3, "image"], prep)
    assert torch.equal(tensor, image)
    assert [info.scale_x, info.scale_y, info.pad_left, info.pad_top] == target["resize"].tolist()
    output = {"boxes": target["boxes"], "scores": torch.tensor([0.8]), "labels": torch.tensor([1])}
    rows = prediction_rows("d.png", output, info, ["Active"], shape=(64, 96))
    assert rows[0]["label"] == "Active" and rows[0]["score"] == pytest.approx(0.8)
    assert [rows[0][k] for k in ("x1", "y1", "x2", "y2")] == pytest.approx([10, 30, 40, 50], abs=1)


def test_window_scales_raw_values_before_resizing() -> None:
    hu = np.array([[-1000, 0], [40, 1000]], np.int16)
    pixels, info = prepare_pixels(hu, Preprocess(size=2, window="40,400"))
    assert pixels.shape == (1, 2, 2) and info.scale_x == 1.0
    assert pixels[0].ravel().tolist() == pytest.approx([0.0, 0.4, 0.5, 1.0], abs=0.01)
    rgb = np.zeros((4, 4, 3), np.uint8)
    assert prepare_pixels(rgb, Preprocess(size=4, channels=3))[0].shape == (3, 4, 4)
    assert prepare_pixels(rgb, Preprocess(size=4, channels=1))[0].shape == (1, 4, 4)


def test_datamodule_splits_classes_and_batches(manifest: pd.DataFrame) -> None:
    splits = pd.DataFrame({"sample_id": list("abcd"), "split": ["train", "train", "train", "val"]})
    module = DetectionDataModule(manifest, splits, prep=Preprocess(size=64), batch_size=2)
    module.setup("fit")
    assert module.classes == ["Active", "Obsolete"]
    assert len(module.dataset("train")) == 3 and len(module.dataset("val")) == 1
    images, targets = next(iter(module.val_dataloader()))
    assert len(images) == 1 and targets[0]["labels"].tolist() == [1]
    merged = DetectionDataModule(manifest, splits, class_agnostic=True, agnostic_name="TB")
    assert merged.classes == ["TB"]
    assert merged.dataset("train")[1][1]["labels"].tolist() == [1, 1]


def test_bad_boxes_are_one_line_errors_naming_the_image(manifest: pd.DataFrame) -> None:
    with pytest.raises(MedilabError, match=r"scan\.png: box 0 .* needs x2 > x1"):
        check_boxes(np.array([[30, 5, 10, 20]]), "scan.png")
    bad = manifest.copy()
    bad.at[0, "boxes"] = [[10, 20, 70, 44]]  # image a is 60 pixels wide
    data = DetectionImages(bad, ["Active", "Obsolete"], Preprocess(size=64))
    with pytest.raises(MedilabError, match=r"a\.png: box 0 .* outside the 60x100 image") as err:
        data[0]
    assert "\n" not in str(err.value)
    bad["width"], bad["height"] = 60, 100  # known sizes: caught before any image is read
    with pytest.raises(MedilabError, match=r"a\.png: box 0"):
        DetectionImages(bad, ["Active", "Obsolete"], Preprocess(size=64))
    bad.at[0, "boxes"], bad.at[0, "box_labels"] = [[1, 1, 5, 5]], ["Unknown"]
    with pytest.raises(MedilabError, match="'Unknown' is not a known class"):
        DetectionImages(bad, ["Active", "Obsolete"], Preprocess(size=64))


def test_tbx11k_boxes_validate_and_merge_into_one_class(medilab_data: Path) -> None:
    from medilab.data.formats.boxes import boxes_csv_manifest

    root = medilab_data / "tbx11k"
    if not root.is_dir():
        pytest.skip("tbx11k not present")
    manifest = boxes_csv_manifest(root / "boxes.csv", images_csv=root / "images.csv")
    splits = pd.DataFrame({"sample_id": manifest["sample_id"], "split": "test"})
    module = DetectionDataModule(manifest, splits, prep=Preprocess(size=256),
                                 class_agnostic=True, agnostic_name="TB")
    module.setup("test")  # every box checked against the images' width and height
    data = module.dataset("test")
    assert len(data) == 752 and module.classes == ["TB"]
    assert sum(len(b) for b in data.boxes) == 902
    assert sum(len(b) == 0 for b in data.boxes) == 153  # 152 healthy + 1 TB image without boxes
    index = next(i for i, b in enumerate(data.boxes) if len(b))
    image, target = data[index]
    assert image.shape == (1, 256, 256)
    back = boxes_to_original(target["boxes"], target["resize"].tolist())
    assert back == pytest.approx(data.boxes[index], abs=1e-3)
