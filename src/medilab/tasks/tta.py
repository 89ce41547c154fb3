"""Test-time augmentation by flips: class probabilities averaged over every combination of
flips of the spatial axes (nnU-Net's mirroring), for whole-image classifiers and for
segmentation (where each flipped probability map is flipped back before averaging)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

from medilab.config import ExperimentConfig


def mirror_axes(
    spatial_dims: int, spatial_axes: list[int] | None = None
) -> list[tuple[int, ...]]:
    """Every subset of the chosen spatial axes (default all; the config checks they exist), as
    axes of a (N, C, *S) batch: the flips of mirror TTA (the empty subset first)."""
    chosen = range(spatial_dims) if spatial_axes is None else sorted(set(spatial_axes))
    axes = [axis + 2 for axis in chosen]
    return [combo for r in range(len(axes) + 1) for combo in itertools.combinations(axes, r)]


def flip_views(config: ExperimentConfig, spatial_dims: int) -> list[tuple[int, ...]]:
    """The flips ``evaluation.tta`` asks for (``[()]``, the image as it is, when off)."""
    evaluation = config.evaluation
    if evaluation.tta != "flips":
        return [()]
    return mirror_axes(spatial_dims, evaluation.tta_axes)


def check_tta_axes(config: ExperimentConfig, spatial_dims: int) -> None:
    """``evaluation.tta_axes`` names spatial axes of the data (ValueError naming them)."""
    axes = config.evaluation.tta_axes or []
    if any(not 0 <= axis < spatial_dims for axis in axes):
        raise ValueError(f"evaluation.tta_axes {axes} names an axis outside "
                         f"0..{spatial_dims - 1} ({spatial_dims}D data)")


def mean_over_flips(
    probabilities: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
    flips: list[tuple[int, ...]], dense: bool = False,
) -> torch.Tensor:
    """The mean of ``probabilities(images flipped)`` over ``flips``; with ``dense`` (per-pixel
    outputs shaped like the images) each output is flipped back first."""
    total: torch.Tensor | None = None
    for axes in flips:
        probs = probabilities(images.flip(axes) if axes else images).float()
        if dense and axes:
            probs = probs.flip(axes)
        total = probs if total is None else total + probs
    assert total is not None, "at least one view (the empty flip) is needed"
    return total / len(flips)


def tta_record(flips: list[tuple[int, ...]]) -> dict[str, object]:
    """How evaluation averaged over views, for metrics.json and the report."""
    if len(flips) <= 1:
        return {"mode": "none", "views": 1}
    axes = sorted({axis - 2 for combo in flips for axis in combo})
    return {"mode": "flips", "axes": axes, "views": len(flips),
            "rule": "mean of the class probabilities over every combination of flips of "
                    f"spatial axes {axes} (0 = rows)"}
