"""Random elastic deformation (the U-Net paper's key augmentation), 2D and 3D.

MONAI's ``Rand2DElasticd`` does the same but costs ~20 ms per 128² patch on a CPU core against
~0.5 ms here, which would double an epoch of patch training on two cores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class RandomElastic(torch.nn.Module):
    """Smooth random deformation: Gaussian shifts (std ``magnitude`` pixels) at control points
    ``spacing`` pixels apart, interpolated to every pixel (bicubic in 2D, trilinear in 3D).

    Call with an image (C, *spatial) and any label maps of the same spatial size (masks, valid
    maps); the image is resampled bilinearly, label maps nearest-neighbour so they keep their
    values. Pixels pulled in from outside become 0.
    """

    def __init__(self, magnitude: float, spacing: int) -> None:
        super().__init__()
        self.magnitude = float(magnitude)
        self.spacing = int(spacing)

    def sampling_grid(self, spatial: tuple[int, ...]) -> torch.Tensor:
        """A ``grid_sample`` grid (1, *spatial, dims) with a fresh random displacement."""
        dims = len(spatial)
        coarse = [max(2, round(size / self.spacing) + 1) for size in spatial]
        control = torch.randn(1, dims, *coarse) * self.magnitude
        mode = "bicubic" if dims == 2 else "trilinear"
        shift = F.interpolate(control, size=spatial, mode=mode, align_corners=True)[0]
        axes = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in spatial],
                              indexing="ij")
        normalised = [(axes[i] + shift[i]) / max(spatial[i] - 1, 1) * 2 - 1 for i in range(dims)]
        return torch.stack(normalised[::-1], dim=-1)[None]  # grid_sample wants (x, y[, z])

    def forward(
        self, image: torch.Tensor, *label_maps: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        grid = self.sampling_grid(tuple(image.shape[1:]))
        warped = [_resample(image, grid, "bilinear")]
        warped += [_resample(m, grid, "nearest") for m in label_maps]
        return warped[0] if not label_maps else tuple(warped)


def _resample(volume: torch.Tensor, grid: torch.Tensor, mode: str) -> torch.Tensor:
    out = F.grid_sample(volume[None].float(), grid, mode=mode, padding_mode="zeros",
                        align_corners=True)
    return out[0].to(volume.dtype)
