"""Intensity tools on numpy arrays: windowing, log transform, simplest color balance,
percentile normalisation, quantisation, and resize with aspect-preserving padding.

Functions that normalise return ``float32`` in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from medilab.errors import MedilabError

# (center, width) in Hounsfield units; common radiology presets.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (40.0, 400.0),
    "soft_tissue": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "liver": (60.0, 150.0),
}


def parse_window(spec: str | tuple[float, float]) -> tuple[float, float]:
    """A window as ``(center, width)`` from a preset name (``lung``) or ``"C,W"`` (``"40,400"``)."""
    if isinstance(spec, tuple | list):
        center, width = (float(v) for v in spec)
    else:
        text = str(spec).strip().lower()
        if text in WINDOW_PRESETS:
            return WINDOW_PRESETS[text]
        parts = text.split(",")
        try:
            center, width = (float(p) for p in parts)
        except ValueError:
            names = ", ".join(sorted(WINDOW_PRESETS))
            raise MedilabError(
                f"window: {spec!r} is neither a preset ({names}) nor 'CENTER,WIDTH'"
            ) from None
    if width <= 0:
        raise MedilabError(f"window: width must be positive, got {width:g}")
    return center, width


def apply_window(
    x: np.ndarray, center: float, width: float, function: str = "LINEAR"
) -> np.ndarray:
    """Window ``x`` to [0, 1] following DICOM PS3.3 C.11.2.1 (``LINEAR``, ``LINEAR_EXACT``,
    ``SIGMOID``), the same formula pydicom's ``apply_windowing`` uses, rescaled to [0, 1]."""
    x = np.asarray(x, dtype=np.float64)
    function = function.upper()
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))).astype(np.float32)
    if function == "LINEAR":
        center, width = center - 0.5, width - 1.0
    elif function != "LINEAR_EXACT":
        raise MedilabError(f"VOILUTFunction: unsupported value {function!r}")
    if width <= 0:
        return (x > center).astype(np.float32)
    y = (x - center) / width + 0.5
    y[x <= center - width / 2] = 0.0
    y[x > center + width / 2] = 1.0
    return y.astype(np.float32)


def minmax_normalise(x: np.ndarray) -> np.ndarray:
    """Scale linearly so the minimum is 0 and the maximum 1 (all zeros for a constant array)."""
    x = np.asarray(x, dtype=np.float64)
    low, high = float(np.min(x)), float(np.max(x))
    if high <= low:
        return np.zeros(x.shape, np.float32)
    return ((x - low) / (high - low)).astype(np.float32)


def percentile_normalise(x: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Map the ``low``-th percentile to 0 and the ``high``-th to 1, clipping outside."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = np.percentile(x, [low, high])
    if hi <= lo:
        return np.zeros(x.shape, np.float32)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def log_transform(x: np.ndarray) -> np.ndarray:
    """``log(1 + x - min)`` rescaled to [0, 1]; brightens dark regions, compresses bright ones.

    On input already in [0, 1] this is ``log1p(x) / log(2)``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.log1p(x - float(np.min(x)))
    top = float(np.max(y))
    return (y / top).astype(np.float32) if top > 0 else np.zeros(x.shape, np.float32)


def simplest_color_balance(
    x: np.ndarray, percent: float = 1.0, channel_axis: int | None = None
) -> np.ndarray:
    """Simplest color balance (Limare et al., IPOL 2011): saturate ``percent`` % of the pixels
    in total — ``percent / 2`` at the dark end and ``percent / 2`` at the bright end — then
    stretch linearly to [0, 1]. With ``channel_axis``, each channel is balanced separately.
    """
    if not 0 <= percent < 100:
        raise MedilabError(f"color balance: percent must be in [0, 100), got {percent:g}")
    x = np.asarray(x, dtype=np.float64)
    if channel_axis is not None:
        channels = [simplest_color_balance(c, percent) for c in np.moveaxis(x, channel_axis, 0)]
        return np.moveaxis(np.stack(channels), 0, channel_axis)
    return percentile_normalise(x, percent / 2.0, 100.0 - percent / 2.0)


def to_bits(x: np.ndarray, bits: int = 8) -> np.ndarray:
    """Quantise [0, 1] floats to ``uint8`` (bits=8) or ``uint16`` (bits=16), rounding."""
    if bits not in (8, 16):
        raise MedilabError(f"bits: must be 8 or 16, got {bits}")
    top = (1 << bits) - 1
    y = np.rint(np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0) * top)
    return y.astype(np.uint8 if bits == 8 else np.uint16)


@dataclass(frozen=True)
class ResizeInfo:
    """How ``resize`` mapped input pixels to output pixels: ``out = in * scale + pad``.

    Coordinates are pixel edges (x in [0, W]), so boxes ``x1, y1, x2, y2`` map exactly.
    """

    in_shape: tuple[int, int]
    out_shape: tuple[int, int]
    scale_y: float
    scale_x: float
    pad_top: int = 0
    pad_bottom: int = 0
    pad_left: int = 0
    pad_right: int = 0

    def boxes_to_output(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``(N, 4)`` boxes ``x1, y1, x2, y2`` from input to output pixels."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y])
        shift = np.array([self.pad_left, self.pad_top, self.pad_left, self.pad_top])
        return b * scale + shift

    def boxes_to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``(N, 4)`` boxes from output pixels back to input pixels."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y])
        shift = np.array([self.pad_left, self.pad_top, self.pad_left, self.pad_top])
        return (b - shift) / scale


_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


def resize_info(
    in_shape: tuple[int, int], size: int | tuple[int, int], keep_aspect: bool = True
) -> ResizeInfo:
    """The mapping ``resize`` uses for an image of ``in_shape`` (no pixels needed)."""
    in_h, in_w = int(in_shape[0]), int(in_shape[1])
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(in_h, in_w, out_h, out_w) < 1:
        raise MedilabError(f"resize: sizes must be positive, got {in_shape} -> {size}")
    if keep_aspect:
        scale = min(out_h / in_h, out_w / in_w)
        new_h, new_w = max(1, round(in_h * scale)), max(1, round(in_w * scale))
    else:
        new_h, new_w = out_h, out_w
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    return ResizeInfo(
        in_shape=(in_h, in_w),
        out_shape=(out_h, out_w),
        scale_y=new_h / in_h,
        scale_x=new_w / in_w,
        pad_top=top,
        pad_bottom=out_h - new_h - top,
        pad_left=left,
        pad_right=out_w - new_w - left,
    )


def _resize_plane(plane: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))
    return np.asarray(image.resize((width, height), resample=resample), dtype=np.float32)


def resize(
    x: np.ndarray,
    size: int | tuple[int, int],
    keep_aspect: bool = True,
    pad_value: float = 0.0,
    interpolation: str = "bilinear",
) -> tuple[np.ndarray, ResizeInfo]:
    """Resize a 2D image ``(H, W)`` or ``(H, W, C)`` to ``size`` (int = square, or ``(H, W)``).

    With ``keep_aspect`` the image is scaled to fit and centred, padded with ``pad_value``;
    otherwise it is stretched. Returns the array (same dtype; integers rounded and clipped)
    and the ``ResizeInfo`` needed to move boxes. Use ``interpolation="nearest"`` for masks.
    """
    if interpolation not in _RESAMPLE:
        raise MedilabError(f"interpolation: expected one of {sorted(_RESAMPLE)}")
    arr = np.asarray(x)
    if arr.ndim not in (2, 3):
        raise MedilabError(f"resize: expected a 2D image (H, W) or (H, W, C), got {arr.shape}")
    info = resize_info(arr.shape[:2], size, keep_aspect)
    (out_h, out_w), (top, left) = info.out_shape, (info.pad_top, info.pad_left)
    new_h, new_w = out_h - top - info.pad_bottom, out_w - left - info.pad_right
    planes = arr[..., None] if arr.ndim == 2 else arr
    resized = np.stack(
        [_resize_plane(planes[..., c], new_h, new_w, _RESAMPLE[interpolation])
         for c in range(planes.shape[-1])],
        axis=-1,
    )
    out = np.full((out_h, out_w, planes.shape[-1]), pad_value, dtype=np.float32)
    out[top : top + new_h, left : left + new_w] = resized
    if arr.ndim == 2:
        out = out[..., 0]
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        limits = np.iinfo(arr.dtype) if arr.dtype != bool else np.iinfo(np.uint8)
        out = np.clip(np.rint(out), limits.min, limits.max)
    return out.astype(arr.dtype), info
