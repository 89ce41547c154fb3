"""Generated segmentation data and a tiny experiment config shared by segmentation tests."""

from pathlib import Path

import numpy as np
from PIL import Image


def write_circles(root: Path, n: int = 8) -> Path:
    """Noisy bright discs on a dark background, 24×28 pixels, masks in masks/."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:24, :28]
    for i in range(n):
        cy, cx, r = rng.integers(8, 16), rng.integers(8, 20), rng.integers(4, 7)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        image = np.clip(60 + 120 * disc + rng.normal(0, 20, disc.shape), 0, 255)
        Image.fromarray(image.astype(np.uint8)).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(disc.astype(np.uint8) * 255).save(root / "masks" / f"{i:02d}.png")
    return root


def circles_config(root: Path, **extra) -> dict:
    """A tiny U-Net segmentation experiment on ``root`` (raw dict, before validation)."""
    raw = {
        "experiment": "circles",
        "task": "segmentation",
        "seed": 0,
        "data": {"source": "segmentation_folder", "root": str(root), "layout": "folders",
                 "val_count": 2, "patch_size": [16, 16], "patches_per_image": 4,
                 "batch_size": 8, "augment": {"hflip": True, "vflip": True}},
        "inference": {"roi_size": [16, 16], "overlap": 0.5},
        "model": {"name": "unet", "kwargs": {"depth": 2, "base_width": 4}},
        "loss": {"name": "dice_ce"},
        "optimizer": {"lr": 0.01},
        "trainer": {"max_epochs": 4, "monitor": "val/dice", "monitor_mode": "max",
                    "progress_bar": False},
        "evaluation": {"bootstrap_samples": 50},
    }
    raw.update(extra)
    return raw


def bar_sample(shape: tuple[int, ...] = (10, 12)):
    """An in-memory SegSample: class 1 in a bar (rows 2-4, columns 3-8), image +1 there and -1
    elsewhere, everything valid."""
    from medilab.data.datamodules.segmentation import SegSample

    mask = np.zeros(shape, np.int64)
    mask[2:5, 3:9] = 1
    image = mask[None].astype(np.float32) * 2 - 1
    return SegSample("s", "s.png", image, mask, np.ones(shape, np.float32),
                     np.zeros(shape, np.uint8))
