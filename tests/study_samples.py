"""A tiny MedMNIST-style npz shared by the study tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_npz(path: Path, seed: int = 0) -> Path:
    """40 train and 16 val 10×10 images; class 1 has a bright square."""
    rng = np.random.default_rng(seed)
    parts = {}
    for name, n in (("train", 40), ("val", 16)):
        labels = np.arange(n) % 2
        images = rng.integers(0, 90, (n, 10, 10)).astype(np.uint8)
        images[labels == 1, 3:7, 3:7] += 120
        parts[f"{name}_images"], parts[f"{name}_labels"] = images, labels[:, None]
    np.savez(path, **parts)
    return path
