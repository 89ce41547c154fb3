"""Draw a CAM (and detector boxes) over the image at the input's original size, as one PNG."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from pytorch_grad_cam.utils.image import show_cam_on_image

from medilab.errors import MedilabError
from medilab.io.atomic import atomic_path

BOX_COLOUR = (255, 0, 0)  # red, RGB


def display_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) → float32 RGB in [0, 1] (uint8 is /255, else min-max)."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise MedilabError(f"overlay: display image must be (H, W) or (H, W, 3), got {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array = np.nan_to_num(array.astype(np.float32))
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return array


def colour_scale(width: int, height: int) -> np.ndarray:
    """The CAM colours (grad-cam's JET) from 0 (left) to 1 (right) as a uint8 RGB strip."""
    ramp = np.linspace(0, 255, width).astype(np.uint8)[None, :]
    bgr = cv2.applyColorMap(np.repeat(ramp, height, axis=0), cv2.COLORMAP_JET)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def annotate(picture: np.ndarray, title: str | None, colorbar: bool) -> np.ndarray:
    """``picture`` (uint8 RGB) with ``title`` in a white band above it and, with
    ``colorbar``, the CAM colour scale labelled "low" … "high" below it."""
    width = picture.shape[1]
    scale = max(0.4, min(1.0, width / 640))
    thickness = 1 if scale < 0.8 else 2
    line = round(28 * scale) + 6
    parts = []
    if title:
        band = np.full((line, width, 3), 255, np.uint8)
        text = _fit(title, width, scale, thickness)
        cv2.putText(band, text, (4, line - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale * 1.6,
                    (0, 0, 0), thickness, cv2.LINE_AA)
        parts.append(band)
    parts.append(picture)
    if colorbar:
        strip = np.full((line + 12, width, 3), 255, np.uint8)
        margin = max(4, width // 20)
        strip[4:14, margin:width - margin] = colour_scale(width - 2 * margin, 10)
        for text, x in (("low", margin), ("CAM", width // 2 - 20), ("high", width - margin - 40)):
            cv2.putText(strip, text, (max(0, x), line + 6), cv2.FONT_HERSHEY_SIMPLEX,
                        0.45 * scale * 1.6, (0, 0, 0), thickness, cv2.LINE_AA)
        parts.append(strip)
    return np.ascontiguousarray(np.concatenate(parts, axis=0))


def _fit(text: str, width: int, scale: float, thickness: int) -> str:
    """``text`` (ASCII: OpenCV's font has no other glyphs) cut and ended with "..." until it
    fits ``width`` pixels at that font scale."""
    text = text.encode("ascii", "replace").decode()
    candidate = text
    for keep in range(len(text), 0, -1):
        candidate = text if keep == len(text) else text[:keep] + "..."
        (w, _), _ = cv2.getTextSize(candidate, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale * 1.6,
                                    thickness)
        if w <= width - 8:
            return candidate
    return candidate


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    if array.shape[:2] == (height, width):
        return array
    return cv2.resize(array, (width, height), interpolation=cv2.INTER_LINEAR)


def scale_boxes(boxes: np.ndarray, from_size: Sequence[int], to_size: Sequence[int]) -> np.ndarray:
    """(x1, y1, x2, y2) boxes in an image of ``from_size`` (H, W) moved to one of ``to_size``."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scale_y, scale_x = to_size[0] / from_size[0], to_size[1] / from_size[1]
    return boxes * np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float32)


def draw_boxes(rgb: np.ndarray, boxes: np.ndarray, captions: Sequence[str] | None = None,
               colour: tuple[int, int, int] = BOX_COLOUR) -> None:
    """Draw ``boxes`` (x1, y1, x2, y2, in ``rgb``'s pixels) on the uint8 RGB image in place,
    each with its caption above it when given; line width grows with the image."""
    height, width = rgb.shape[:2]
    thickness = max(1, round(min(height, width) / 200))
    for index, (x1, y1, x2, y2) in enumerate(np.round(boxes).astype(int)):
        cv2.rectangle(rgb, (x1, y1), (x2, y2), colour, thickness)
        if captions is not None and index < len(captions):
            origin = (x1, max(y1 - 3, 10))
            cv2.putText(
                rgb,
                captions[index],
                origin,
                cv2.FONT_HERSHEY_SIMPLEX,
                0.35 * thickness,
                colour,
                thickness,
                cv2.LINE_AA,
            )


def overlay_png(
    display_image: np.ndarray,
    cam: np.ndarray,
    out: str | os.PathLike[str],
    boxes: np.ndarray | None = None,
    size: tuple[int, int] | None = None,
    captions: Sequence[str] | None = None,
    save_raw: bool = False,
    image_weight: float = 0.5,
    title: str | None = None,
    min_size: int = 0,
    colorbar: bool = False,
) -> Path:
    """Write ``cam`` over ``display_image`` as an RGB PNG of ``size`` (H, W); return its path.

    ``size`` defaults to the display image's size; image and CAM are both resized to it.
    ``boxes`` (x1, y1, x2, y2) are in the CAM's pixel coordinates (the model input) and are
    scaled with it; ``captions`` label them. ``save_raw`` also writes the resized map (at
    ``size``) as ``out`` with suffix ``.npy``. ``min_size``: a smaller overlay is enlarged
    so its shorter side has that many pixels (a 64 px chest X-ray is unreadable as it is);
    ``title`` is written above the picture and ``colorbar`` adds the CAM's colour scale
    under it. Both files are written atomically.
    """
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise MedilabError(f"overlay: the CAM must be a (H, W) map, got shape {cam.shape}")
    rgb = display_rgb(display_image)
    size = tuple(size) if size is not None else rgb.shape[:2]
    heat = np.clip(_resize(cam, size), 0.0, 1.0)
    shown = size
    if min_size and min(size) < min_size:
        factor = min_size / min(size)
        shown = (round(size[0] * factor), round(size[1] * factor))
    picture = show_cam_on_image(_resize(rgb, shown), np.clip(_resize(heat, shown), 0.0, 1.0),
                                use_rgb=True, image_weight=image_weight)
    if boxes is not None and len(boxes):
        draw_boxes(picture, scale_boxes(boxes, cam.shape, shown), captions)
    if title or colorbar:
        picture = annotate(picture, title, colorbar)
    out = Path(out)
    with atomic_path(out, suffix=".png") as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
    if save_raw:
        with atomic_path(out.with_suffix(".npy")) as tmp, open(tmp, "wb") as handle:
            np.save(handle, heat)
    return out
