"""Segmentation augmentation from config, as MONAI dictionary transforms (2D and 3D).

One draw moves the image, its mask and its valid (field-of-view) map together: flips, 90°
rotations in the image plane, a random affine (rotation in the image plane, translation,
scaling) and elastic deformation; the image is interpolated bilinearly and the maps
nearest-neighbour, so they keep their values. Brightness and contrast change the image only.
With ``augment.soft_labels`` the mask becomes a one-hot float map ``(K, *S)`` interpolated like
the image, so class shares keep sub-pixel positions.

MONAI's random transforms draw from a numpy random state (one shared by the pipeline); each call
seeds it from torch's global generator, so the augmentation follows the seed mechanism of
training (``run.EpochSeeds``, Lightning's worker seeding) and ``torch.manual_seed`` in tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import get_track_meta, set_track_meta
from monai.transforms import (
    AsDiscreted,
    Compose,
    MapTransform,
    RandAffined,
    RandFlipd,
    Randomizable,
    RandomizableTransform,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

from medilab.config import AugmentConfig
from medilab.data.transforms.elastic import RandomElastic

KEYS = ("image", "mask", "valid")
MAX_SEED = 2**31 - 1


class RandElasticd(RandomizableTransform, MapTransform):
    """:class:`~medilab.data.transforms.elastic.RandomElastic` as a MONAI dictionary transform:
    one displacement field for every key, drawn from MONAI's random state, each key
    interpolated with its ``mode`` (``"bilinear"`` or ``"nearest"``). MONAI's own
    ``Rand2DElasticd`` costs ~40× more per patch on a CPU (see the elastic module)."""

    def __init__(self, keys: Sequence[str], magnitude: float, spacing: int,
                 mode: Sequence[str]) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        MapTransform.__init__(self, keys)
        self.elastic = RandomElastic(magnitude, spacing)
        self.mode = dict(zip(keys, mode, strict=True))

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        out = dict(data)
        spatial = tuple(out[self.keys[0]].shape[1:])
        control = self.R.standard_normal(self.elastic.control_shape(spatial)).astype(np.float32)
        grid = self.elastic.sampling_grid(spatial, torch.from_numpy(control))
        for key in self.key_iterator(out):
            out[key] = self.elastic.resample(torch.as_tensor(out[key]), grid, self.mode[key])
        return out


class SegmentationAugment:
    """Call with ``image (C, *S)``, ``mask (*S)`` int64 and ``valid (*S)``; returns them
    augmented (the mask one-hot ``(K, *S)`` float with ``soft_labels``). The MONAI pipeline is
    built once per patch shape (translation is a fraction of it; rot90 needs square planes)."""

    def __init__(self, augment: AugmentConfig, spatial_dims: int = 2, num_classes: int = 2
                 ) -> None:
        self.cfg = augment
        self.spatial_dims = spatial_dims
        self.num_classes = num_classes
        self._pipelines: dict[tuple[int, ...], Compose] = {}
        self._random = np.random.RandomState()

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        spatial = tuple(int(s) for s in image.shape[1:])
        pipeline = self._pipelines.get(spatial)
        if pipeline is None:
            pipeline = self._pipelines[spatial] = Compose(self.steps(spatial))
            for step in pipeline.transforms:  # one shared random state, reseeded per call
                if isinstance(step, Randomizable):
                    step.set_random_state(state=self._random)
        self._random.seed(int(torch.randint(0, MAX_SEED, ()).item()))
        tracking = get_track_meta()
        set_track_meta(False)  # plain tensors: no MetaTensor bookkeeping (3–10× faster here)
        try:
            out = pipeline({"image": image, "mask": mask[None], "valid": valid[None]})
        finally:
            set_track_meta(tracking)
        image, mask, valid = (torch.as_tensor(out[key]).as_subclass(torch.Tensor)
                              for key in KEYS)
        mask = mask.float() if self.cfg.soft_labels else mask[0].round().long()
        return (image.float().contiguous(), mask.contiguous(),
                valid[0].float().contiguous())

    def steps(self, spatial: tuple[int, ...]) -> list[Callable[[Any], Any]]:
        """The MONAI dictionary transforms for patches of ``spatial`` size, in order."""
        cfg, dims = self.cfg, len(spatial)
        plane = (dims - 2, dims - 1)  # the image plane: rows, columns
        label_mode = "bilinear" if cfg.soft_labels else "nearest"
        modes = ("bilinear", label_mode, "nearest")
        steps: list[Callable[[Any], Any]] = []
        if cfg.soft_labels:
            steps.append(AsDiscreted(keys="mask", to_onehot=self.num_classes))
        if cfg.hflip:
            steps.append(RandFlipd(KEYS, prob=0.5, spatial_axis=dims - 1))
        if cfg.vflip:
            steps.append(RandFlipd(KEYS, prob=0.5, spatial_axis=dims - 2))
        if cfg.rot90:
            if spatial[plane[0]] == spatial[plane[1]]:  # k = 0, 1, 2, 3 equally often
                steps.append(RandRotate90d(KEYS, prob=0.75, max_k=3, spatial_axes=plane))
            else:  # a quarter turn would change the shape: 0° or 180° (both axes flipped)
                steps.append(RandFlipd(KEYS, prob=0.5, spatial_axis=plane))
        if cfg.rotate_degrees or cfg.translate or cfg.scale:
            angle = math.radians(cfg.rotate_degrees)
            steps.append(RandAffined(
                KEYS, spatial_size=spatial, prob=1.0, cache_grid=True,
                rotate_range=angle if dims == 2 else (angle, 0.0, 0.0),  # in the image plane
                translate_range=[cfg.translate * s for s in spatial] if cfg.translate else None,
                scale_range=cfg.scale or None, mode=modes, padding_mode="zeros"))
        if cfg.elastic_magnitude:
            steps.append(RandElasticd(KEYS, cfg.elastic_magnitude, cfg.elastic_spacing, modes))
        if cfg.soft_labels:
            steps.append(renormalise_soft_mask)
        if cfg.contrast:  # image × (1 + u), u uniform in ±contrast
            steps.append(RandScaleIntensityd("image", factors=cfg.contrast, prob=1.0))
        if cfg.brightness:  # image + u, u uniform in ±brightness
            steps.append(RandShiftIntensityd("image", offsets=cfg.brightness, prob=1.0))
        return steps


def renormalise_soft_mask(data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
    """Class shares that sum to 1 again where zeros from outside the patch were mixed in, and a
    valid map that drops pixels that are mostly outside."""
    out = dict(data)
    total = torch.as_tensor(out["mask"]).sum(0, keepdim=True)
    out["mask"] = torch.as_tensor(out["mask"]) / total.clamp_min(1e-6)
    out["valid"] = torch.as_tensor(out["valid"]) * (total > 0.5).to(torch.float32)
    return out
