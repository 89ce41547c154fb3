"""MedMNIST ``.npz`` files: ``<split>_images`` and ``<split>_labels`` for whatever splits exist.

2D (N, H, W[, C]) and 3D (N, D, H, W) images of any size; a file without ``test_*`` keys works.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medilab.data.formats.pixels import npz_reference
from medilab.errors import InputFileError
from medilab.io.images import npz_array, open_npz
from medilab.io.messages import short_list


@dataclass
class MedMNISTSplit:
    """Images (N, ...) and labels (N,) or (N, C) of one split."""

    images: np.ndarray
    labels: np.ndarray


def load_medmnist(path: str | Path) -> dict[str, MedMNISTSplit]:
    """All splits of a MedMNIST npz, in file order (``train``, ``val``, ``test`` when present).

    Single-column labels (N, 1) are flattened to (N,).
    """
    path = Path(path)
    data = open_npz(path)
    with data:
        names = [k[: -len("_images")] for k in data.files if k.endswith("_images")]
        if not names:
            raise InputFileError(
                path, f"no '<split>_images' arrays (has {short_list(data.files)})"
            )
        splits = {}
        for name in names:
            if f"{name}_labels" not in data.files:
                raise InputFileError(path, f"'{name}_images' has no '{name}_labels'")
            images = npz_array(data, f"{name}_images", path)
            labels = npz_array(data, f"{name}_labels", path)
            if len(images) != len(labels):
                raise InputFileError(
                    path, f"'{name}': {len(images)} images but {len(labels)} labels"
                )
            if labels.ndim == 2 and labels.shape[1] == 1:
                labels = labels[:, 0]
            splits[name] = MedMNISTSplit(images, labels)
    return splits


def medmnist_manifest(path: str | Path) -> pd.DataFrame:
    """A manifest ``sample_id, image, label, split`` whose images are npz references.

    ``sample_id`` is ``<split>_<index>``; the file's own split is the ``split`` column.
    Multi-label files keep ``label`` as a list per row.
    """
    path = Path(path).resolve()
    rows = []
    for name, part in load_medmnist(path).items():
        labels = part.labels.tolist()
        for index, label in enumerate(labels):
            rows.append(
                {
                    "sample_id": f"{name}_{index}",
                    "image": npz_reference(path, name, index),
                    "label": label,
                    "split": name,
                }
            )
    return pd.DataFrame(rows)
