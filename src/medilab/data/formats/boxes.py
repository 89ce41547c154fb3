"""Bounding boxes from a CSV (``x,y,w,h`` or ``x1,y1,x2,y2``) or a COCO JSON, as a detection
manifest: one row per image with ``boxes`` (``[x1, y1, x2, y2]`` in pixels) and ``box_labels``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pandas as pd

from medilab.data.formats.manifest import validate_manifest
from medilab.errors import InputFileError

BoxFormat = Literal["auto", "xyxy", "xywh"]
_COLUMNS = {"xyxy": ("x1", "y1", "x2", "y2"), "xywh": ("x", "y", "w", "h")}


def read_boxes_csv(
    path: str | Path,
    *,
    box_format: BoxFormat = "auto",
    image_column: str = "image",
    label_column: str = "label",
    strict: bool = True,
) -> pd.DataFrame:
    """Long table ``image, label, x1, y1, x2, y2``; ``xywh`` boxes are converted.

    ``auto`` picks the format from the columns (``x1..y2`` or ``x,y,w,h``). ``strict``: a
    missing or non-numeric coordinate or a box without area is an error naming its row and
    image; else such boxes are kept (NaN for a bad value) for ``data verify`` to list.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    table = pd.read_csv(path)
    if box_format == "auto":
        found = [f for f, cols in _COLUMNS.items() if set(cols) <= set(table.columns)]
        if not found:
            raise InputFileError(
                path, f"no box columns x1,y1,x2,y2 or x,y,w,h; has {list(table.columns)}"
            )
        box_format = found[0]
    needed = [image_column, *_COLUMNS[box_format]]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputFileError(path, f"missing column(s) {missing}; has {list(table.columns)}")
    raw = table[list(_COLUMNS[box_format])]
    coords = raw.apply(pd.to_numeric, errors="coerce").astype(float)
    images = table[image_column].astype(str)
    if strict and coords.isna().any().any():
        row, col = next((r, c) for c in coords.columns for r in range(len(coords))
                        if pd.isna(coords[c].iloc[r]))
        value = raw[col].iloc[row]
        what = "value is missing" if pd.isna(value) else f"{value!r} is not a number"
        raise InputFileError(path, f"row {row + 1} (image {images.iloc[row]}), column "
                             f"{col!r}: {what}")
    if box_format == "xywh":
        x1, y1 = coords["x"], coords["y"]
        x2, y2 = x1 + coords["w"], y1 + coords["h"]
    else:
        x1, y1, x2, y2 = (coords[c] for c in _COLUMNS["xyxy"])
    out = pd.DataFrame({
        "image": images,
        "label": table[label_column].astype(str) if label_column in table.columns else "object",
        "x1": x1, "y1": y1, "x2": x2, "y2": y2,
    })
    bad = (out["x2"] <= out["x1"]) | (out["y2"] <= out["y1"])
    if strict and bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        box = ", ".join(f"{v:g}" for v in out.loc[row, ["x1", "y1", "x2", "y2"]])
        raise InputFileError(path, f"row {row + 1} (image {out.loc[row, 'image']}): box "
                             f"[{box}] has no area (needs x2 > x1 and y2 > y1)")
    return out


def boxes_manifest(
    boxes: pd.DataFrame,
    images_dir: str | Path,
    *,
    images: list[str] | None = None,
    source: object = "boxes",
    check_files: bool = True,
    strict: bool = True,
) -> pd.DataFrame:
    """Group a long box table by image: ``sample_id, image, boxes, box_labels``.

    ``images`` lists every image name (so images without boxes are kept with empty lists);
    default: the images that have boxes. A boxed image ``images`` does not list is an error
    (``strict``), else a row with ``unlisted`` True.
    """
    images_dir = Path(images_dir)
    names = list(dict.fromkeys(images if images is not None else boxes["image"].tolist()))
    grouped = {name: part for name, part in boxes.groupby("image", sort=False)}
    unknown = [name for name in grouped if name not in set(names)]
    if unknown and strict:
        raise InputFileError(source, f"column 'image': {unknown[0]!r} is not a known image")
    listed = len(names)
    names += unknown
    rows = []
    for name in names:
        part = grouped.get(name)
        coords = [] if part is None else part[["x1", "y1", "x2", "y2"]].to_numpy().tolist()
        labels = [] if part is None else part["label"].tolist()
        rows.append({"sample_id": Path(name).stem, "image": str(images_dir / name),
                     "boxes": coords, "box_labels": labels})
    manifest = pd.DataFrame(rows)
    if unknown:
        manifest["unlisted"] = [i >= listed for i in range(len(manifest))]
    return validate_manifest(manifest, source=source, check_files=check_files,
                             check_boxes=strict)


def boxes_csv_manifest(
    boxes_csv: str | Path,
    images_dir: str | Path | None = None,
    *,
    images_csv: str | Path | None = None,
    box_format: BoxFormat = "auto",
    check_files: bool = True,
    strict: bool = True,
) -> pd.DataFrame:
    """Detection manifest from a boxes CSV (and optionally an ``images.csv`` listing every image,
    with its other columns, e.g. ``tb``, kept). ``images_dir`` defaults to ``<csv folder>/images``.
    ``strict`` False keeps bad boxes and unlisted images for ``data verify``.
    """
    boxes_csv = Path(boxes_csv)
    images_dir = Path(images_dir) if images_dir else boxes_csv.parent / "images"
    table = read_boxes_csv(boxes_csv, box_format=box_format, strict=strict)
    extra = None
    if images_csv is not None:
        extra = pd.read_csv(images_csv)
        if "image" not in extra.columns:
            raise InputFileError(images_csv, "missing column 'image'")
    names = extra["image"].astype(str).tolist() if extra is not None else None
    manifest = boxes_manifest(table, images_dir, images=names, source=boxes_csv,
                              check_files=check_files, strict=strict)
    if extra is not None:
        extra = extra.drop(columns="image").reset_index(drop=True)
        manifest = pd.concat([manifest, extra], axis=1)  # unlisted images: no extra values
    return manifest


def read_coco(
    path: str | Path, images_dir: str | Path | None = None, *, check_files: bool = True
) -> pd.DataFrame:
    """Detection manifest from a COCO JSON (``bbox`` is x, y, w, h; category names as labels)."""
    path = Path(path)
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(path, "file not found") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"not valid JSON ({exc.msg}, line {exc.lineno})") from None
    for key in ("images", "annotations"):
        if key not in coco:
            raise InputFileError(path, f"missing key {key!r}")
    categories = {c["id"]: c.get("name", str(c["id"])) for c in coco.get("categories", [])}
    files = {}
    for image in coco["images"]:
        files[image["id"]] = image["file_name"]
    rows = []
    for i, ann in enumerate(coco["annotations"]):
        if ann.get("image_id") not in files:
            raise InputFileError(path, f"annotations[{i}]: unknown image_id {ann.get('image_id')}")
        x, y, w, h = (float(v) for v in ann["bbox"])
        label = categories.get(ann.get("category_id"), str(ann.get("category_id")))
        rows.append({"image": files[ann["image_id"]], "label": label,
                     "x1": x, "y1": y, "x2": x + w, "y2": y + h})
    table = pd.DataFrame(rows, columns=["image", "label", "x1", "y1", "x2", "y2"])
    base = Path(images_dir) if images_dir else path.parent
    return boxes_manifest(table, base, images=list(files.values()), source=path,
                          check_files=check_files)
