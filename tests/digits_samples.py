"""Digits tables for tests (importable from any test folder; conftest modules are not)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def write_digits_csv(path: Path, n: int = 200, labelled: bool = True, seed: int = 0) -> Path:
    """A Kaggle-layout CSV of ``n`` real scikit-learn digits (8×8, grey levels 0–16)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(digits.target), size=n, replace=False)
    pixels = digits.images[rows].reshape(n, -1).astype(int)
    frame = pd.DataFrame(pixels, columns=[f"pixel{i}" for i in range(64)])
    if labelled:
        frame.insert(0, "label", digits.target[rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path
