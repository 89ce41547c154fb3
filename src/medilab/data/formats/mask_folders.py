"""Image folders paired with mask folders by a filename key.

ISBI 2012: ``images/NN.png`` + ``labels/NN.png``; DRIVE: ``images/NN_training.tif`` +
``1st_manual/NN_manual1.gif`` + ``mask/NN_training_mask.gif``. The key rule picks the part of the
file name that pairs files: ``"number"`` (the leading number), ``"stem"`` (name without
extension), or a regular expression whose first group is the key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from medilab.data.formats.manifest import validate_manifest
from medilab.errors import InputFileError
from medilab.io.reader import is_image_file

KeyRule = str | Callable[[str], str | None]


def key_function(rule: KeyRule) -> Callable[[str], str | None]:
    """A function from a file name to its pairing key (None when the name has no key)."""
    if callable(rule):
        return rule
    if rule == "stem":
        return lambda name: name.split(".")[0]
    pattern = re.compile(r"^0*(\d+)" if rule == "number" else rule)

    def key(name: str) -> str | None:
        match = pattern.search(name)
        if not match:
            return None
        return match.group(1) if match.groups() else match.group(0)

    return key


def _keyed_files(folder: Path, key: Callable[[str], str | None]) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputFileError(folder, "folder not found")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not is_image_file(path):
            continue
        k = key(path.name)
        if k is None:
            continue
        if k in files:
            raise InputFileError(path, f"pairing key {k!r} also matches {files[k].name}")
        files[k] = path
    return files


def pair_files(
    images: str | Path,
    others: Mapping[str, str | Path],
    *,
    key: KeyRule = "number",
    require_all: bool = True,
) -> pd.DataFrame:
    """``sample_id, image, <column>...``: each image with the file of the same key in each
    folder of ``others`` (column name → folder). Missing partners are errors naming the image
    unless ``require_all`` is False (then the cell is empty)."""
    keyfn = key_function(key)
    image_files = _keyed_files(Path(images), keyfn)
    if not image_files:
        raise InputFileError(images, "no image files whose name matches the key rule")
    other_files = {column: _keyed_files(Path(folder), keyfn) for column, folder in others.items()}
    rows = []
    for k, image in image_files.items():
        row = {"sample_id": image.name.split(".")[0], "image": str(image)}
        for column, files in other_files.items():
            partner = files.get(k)
            if partner is None and require_all:
                raise InputFileError(
                    image, f"no file with key {k!r} in {others[column]} (column {column!r})"
                )
            row[column] = str(partner) if partner else None
        rows.append(row)
    return pd.DataFrame(rows)


def mask_folder_manifest(
    root: str | Path,
    *,
    images: str = "images",
    masks: str | Mapping[str, str] = "labels",
    key: KeyRule = "number",
    check_masks: bool = False,
) -> pd.DataFrame:
    """A segmentation manifest from ``root/images`` and mask folder(s) under ``root``.

    ``masks`` is the mask folder name (column ``mask``) or a mapping column → folder, e.g.
    DRIVE: ``{"mask": "1st_manual", "fov": "mask"}``. ``check_masks`` reads every pair and
    requires the mask and image sizes to match.
    """
    root = Path(root)
    mapping = {"mask": masks} if isinstance(masks, str) else dict(masks)
    table = pair_files(root / images, {c: root / f for c, f in mapping.items()}, key=key)
    return validate_manifest(table, source=root, required=("image", "mask"),
                             check_masks=check_masks)
