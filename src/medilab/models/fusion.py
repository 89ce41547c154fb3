"""Lab 3 slice fusion: 2D members that take a whole volume (N, 1, D, H, W) and pick slices.

Every member of the fusion study gets the same input, the whole volume, so data, split and
augmentation are identical for all of them; the model selects the slices it looks at:

- ``fusion_single``: the centre slice → one 2D backbone (1 channel);
- ``fusion_early``: ``slices`` neighbouring slices as the channels of one 2D backbone;
- ``fusion_late``: one 2D model per slice (shared or separate weights), class probabilities
  mixed by a weighted sum; ``forward`` returns the **log of the mixture probabilities**, so
  ``CrossEntropyLoss`` on the output is the NLL of the mixture (softmax(log p) = p) and
  ``output.softmax(1)`` gives the mixture probabilities back.

The 2D backbone is any registered model, built by name with ``create_model``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from medilab.errors import ConfigError
from medilab.models.registry import create_model, no_covariates, register_model

_SPATIAL_AXES = 3


def slice_indices(size: int, slices: int, index: int | None = None) -> list[int]:
    """Indices of ``slices`` neighbouring slices centred on ``index`` (default ``size // 2``).

    For an even count the extra slice is taken before the centre (6 → centre-3 … centre+2).
    Indices past either edge repeat the edge slice.
    """
    centre = size // 2 if index is None else index
    if not 0 <= centre < size:
        raise ConfigError(f"model.kwargs.index: slice {centre} is outside 0..{size - 1}")
    first = centre - slices // 2
    return [min(max(first + offset, 0), size - 1) for offset in range(slices)]


class SliceSelector(nn.Module):
    """(N, 1, D, H, W) volume → (N, k, ·, ·): ``slices`` neighbouring slices along ``axis``.

    ``axis`` counts spatial axes (0 = D, 1 = H, 2 = W); the selected slices become channels.
    """

    def __init__(self, slices: int = 1, axis: int = 0, index: int | None = None) -> None:
        super().__init__()
        if slices < 1:
            raise ConfigError(f"model.kwargs.slices: need at least one slice, got {slices}")
        if axis not in range(_SPATIAL_AXES):
            raise ConfigError(f"model.kwargs.axis: must be 0 (D), 1 (H) or 2 (W), got {axis}")
        self.slices = slices
        self.axis = axis
        self.index = index

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        if volume.ndim != 5 or volume.shape[1] != 1:
            raise ValueError(f"expected a (N, 1, D, H, W) volume, got {tuple(volume.shape)}")
        dim = 2 + self.axis
        chosen = slice_indices(volume.shape[dim], self.slices, self.index)
        picked = volume.index_select(dim, torch.tensor(chosen, device=volume.device))
        return picked.squeeze(1).movedim(self.axis + 1, 1)

    def extra_repr(self) -> str:
        return f"slices={self.slices}, axis={self.axis}, index={self.index}"


class SliceModel(nn.Module):
    """Select slices, then run one 2D model on them as channels (single and early fusion)."""

    def __init__(self, selector: SliceSelector, backbone: nn.Module) -> None:
        super().__init__()
        self.selector = selector
        self.backbone = backbone

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.selector(volume))


class LateFusion(nn.Module):
    """One 2D model per slice, class probabilities mixed with weights on the simplex.

    ``weights``: ``"uniform"``, ``"learned"`` (softmax of parameters trained end to end),
    ``"fitted"`` (uniform while training; the engine fits them on validation afterwards,
    :func:`fit_late_weights`) or a list of ``slices`` non-negative numbers (normalised to sum
    1). ``forward`` returns log(Σ_i w_i · softmax(model_i(slice_i))), the log of the mixture
    probabilities.
    """

    def __init__(
        self,
        selector: SliceSelector,
        models: Sequence[nn.Module],
        weights: str | Sequence[float] = "uniform",
    ) -> None:
        super().__init__()
        k = selector.slices
        if len(models) not in (1, k):
            raise ValueError(f"need one shared model or {k} models, got {len(models)}")
        self.selector = selector
        self.members = nn.ModuleList(models)
        self.learned = isinstance(weights, str) and weights == "learned"
        self.fit_on_validation = isinstance(weights, str) and weights == "fitted"
        if isinstance(weights, str):
            if weights not in ("uniform", "learned", "fitted"):
                raise ConfigError(f"model.kwargs.fusion_weights: {weights!r} is not 'uniform', "
                                  "'learned', 'fitted' or a list")
            initial = np.full(k, 1.0 / k)
        else:
            initial = _simplex(weights, k)
        self.weight_logits = nn.Parameter(torch.zeros(k), requires_grad=self.learned)
        self.register_buffer("fixed_weights", torch.tensor(initial, dtype=torch.float32))

    @property
    def shared(self) -> bool:
        return len(self.members) == 1

    def weights(self) -> torch.Tensor:
        """The current mixture weights, shape (k,), non-negative, summing to 1."""
        if self.learned:
            return self.weight_logits.float().softmax(0)
        return self.fixed_weights

    def fusion_weights(self) -> list[float]:
        """The current mixture weights as plain floats (for run files and reports)."""
        return [float(w) for w in self.weights().detach().cpu()]

    @torch.no_grad()
    def set_fusion_weights(self, weights: Sequence[float] | np.ndarray) -> None:
        """Use these weights (e.g. from :func:`fit_late_weights`); they are normalised to sum 1."""
        values = torch.tensor(_simplex(weights, self.selector.slices), dtype=torch.float32)
        if self.learned:
            self.weight_logits.copy_(values.clamp_min(1e-12).log())
        else:
            self.fixed_weights.copy_(values)

    def per_slice_logits(self, volume: torch.Tensor) -> torch.Tensor:
        """(N, k, K) logits of every slice's own model."""
        slices = self.selector(volume)
        n, k = slices.shape[:2]
        if self.shared:
            flat = slices.reshape(n * k, 1, *slices.shape[2:])
            return self.members[0](flat).reshape(n, k, -1)
        return torch.stack(
            [model(slices[:, i : i + 1]) for i, model in enumerate(self.members)], dim=1
        )

    def per_slice_probabilities(self, volume: torch.Tensor) -> torch.Tensor:
        """(N, k, K) class probabilities of every slice's model: the input of fit_late_weights."""
        return self.per_slice_logits(volume).float().softmax(-1)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        log_probs = self.per_slice_logits(volume).float().log_softmax(-1)
        log_weights = self.weights().to(log_probs.device).log()
        return torch.logsumexp(log_probs + log_weights[None, :, None], dim=1)


def fit_late_weights(per_slice_probs: np.ndarray | torch.Tensor, labels: Any) -> np.ndarray:
    """Mixture weights (non-negative, summing to 1) that maximise the validation log-likelihood.

    ``per_slice_probs`` is (N, k, K) class probabilities per slice model, ``labels`` (N,) class
    indices. Maximises mean_n log Σ_i w_i p[n, i, y_n] over the simplex (a concave problem) with
    scipy's SLSQP, so weights of useless slices can be exactly 0.
    """
    from scipy.optimize import minimize

    probs = np.asarray(_as_numpy(per_slice_probs), dtype=np.float64)
    y = np.asarray(_as_numpy(labels)).reshape(-1).astype(np.int64)
    if probs.ndim != 3 or probs.shape[0] != y.shape[0]:
        raise ValueError(f"need (N, k, K) probabilities and N labels, got {probs.shape}, {y.shape}")
    k = probs.shape[1]
    if k == 1:
        return np.ones(1)
    own = probs[np.arange(len(y)), :, y]  # (N, k): probability each slice gives the true class
    eps = 1e-12

    def loss(w: np.ndarray) -> float:
        return float(-np.log(own @ w + eps).mean())

    def grad(w: np.ndarray) -> np.ndarray:
        return -(own / (own @ w + eps)[:, None]).mean(0)

    result = minimize(
        loss,
        np.full(k, 1.0 / k),
        jac=grad,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(k)}],
        options={"maxiter": 500, "ftol": 1e-12},
    )
    weights = np.clip(result.x, 0.0, None)
    return weights / weights.sum()


def _simplex(weights: Sequence[float] | np.ndarray, k: int) -> np.ndarray:
    values = np.asarray(weights, dtype=np.float64).reshape(-1)
    if values.shape[0] != k or (values < 0).any() or values.sum() <= 0:
        raise ConfigError(
            f"model.kwargs.weights: need {k} non-negative numbers with a positive sum, got "
            f"{values.tolist()}"
        )
    return values / values.sum()


def _as_numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _slice_size(image_size: Sequence[int] | None, axis: int) -> list[int] | None:
    """The 2D size of one slice of a volume of ``image_size`` (D, H, W), cut along ``axis``."""
    if image_size is None:
        return None
    size = list(image_size)
    if len(size) != _SPATIAL_AXES:
        raise ConfigError(f"model.image_size: fusion models need [D, H, W], got {size}")
    return [s for i, s in enumerate(size) if i != axis]


def _backbone(
    name: str,
    in_channels: int,
    num_classes: int,
    image_size: list[int] | None,
    backbone_kwargs: dict[str, Any] | None,
) -> nn.Module:
    return create_model(
        name,
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=image_size,
        **(backbone_kwargs or {}),
    )


def _check_volume_channels(in_channels: int) -> None:
    if in_channels != 1:
        raise ConfigError(
            f"model: slice fusion needs 1-channel volumes, got in_channels={in_channels}"
        )


@register_model("fusion_single")
def fusion_single(
    num_classes: int,
    in_channels: int = 1,
    image_size: Sequence[int] | None = None,
    backbone: str = "small_cnn",
    backbone_kwargs: dict[str, Any] | None = None,
    axis: int = 0,
    index: int | None = None,
    num_covariates: int = 0,
) -> SliceModel:
    """The centre slice (or slice ``index``) along ``axis`` → a 2D ``backbone`` with 1 channel."""
    _check_volume_channels(in_channels)
    no_covariates("slice fusion", num_covariates)
    selector = SliceSelector(1, axis, index)
    size = _slice_size(image_size, axis)
    return SliceModel(selector, _backbone(backbone, 1, num_classes, size, backbone_kwargs))


@register_model("fusion_early")
def fusion_early(
    num_classes: int,
    in_channels: int = 1,
    image_size: Sequence[int] | None = None,
    slices: int = 6,
    backbone: str = "small_cnn",
    backbone_kwargs: dict[str, Any] | None = None,
    axis: int = 0,
    index: int | None = None,
    num_covariates: int = 0,
) -> SliceModel:
    """``slices`` neighbouring slices as the channels of one 2D ``backbone`` (early fusion)."""
    _check_volume_channels(in_channels)
    no_covariates("slice fusion", num_covariates)
    selector = SliceSelector(slices, axis, index)
    size = _slice_size(image_size, axis)
    return SliceModel(selector, _backbone(backbone, slices, num_classes, size, backbone_kwargs))


@register_model("fusion_late")
def fusion_late(
    num_classes: int,
    in_channels: int = 1,
    image_size: Sequence[int] | None = None,
    slices: int = 6,
    backbone: str = "small_cnn",
    backbone_kwargs: dict[str, Any] | None = None,
    shared: bool = True,
    fusion_weights: str | Sequence[float] = "uniform",
    axis: int = 0,
    index: int | None = None,
    num_covariates: int = 0,
) -> LateFusion:
    """One 1-channel 2D ``backbone`` per slice (``shared`` weights or not), probabilities mixed
    with ``fusion_weights`` ("uniform", "learned", "fitted" on validation by the engine, or a
    list); returns log mixture probabilities. (``fusion_weights``, not ``weights``: that name
    means pretrained weights for every other model.)"""
    _check_volume_channels(in_channels)
    no_covariates("slice fusion", num_covariates)
    selector = SliceSelector(slices, axis, index)
    size = _slice_size(image_size, axis)
    count = 1 if shared else slices
    models = [_backbone(backbone, 1, num_classes, size, backbone_kwargs) for _ in range(count)]
    return LateFusion(selector, models, fusion_weights)
