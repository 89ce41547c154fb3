"""Class activation maps for medilab classifiers (pytorch-grad-cam: GradCAM, EigenCAM, AblationCAM).

A classifier is called as ``model(image)`` or ``model(image, covariates)`` and returns logits
(N, K). Covariates are held fixed for the explained image, so grad-cam sees ``model(image)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from pytorch_grad_cam import AblationCAM, GradCAM
from pytorch_grad_cam.ablation_layer import AblationLayer, AblationLayerVit
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from medilab.errors import MedilabError
from medilab.explain.eigen import SignedEigenCAM
from medilab.explain.layers import TargetLayer, find_target_layer

CLASSIFIER_METHODS = ("gradcam", "eigencam", "ablationcam")


class FixedCovariates(nn.Module):
    """``model(image, covariates)`` seen as ``model(image)``, the covariates repeated per image."""

    def __init__(self, model: nn.Module, covariates: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("covariates", covariates.reshape(1, -1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image, self.covariates.expand(image.shape[0], -1))


def check_method(method: str, choices: tuple[str, ...], what: str) -> str:
    """``method`` lower-cased, or a MedilabError naming the methods that work for ``what``."""
    name = method.lower().replace("-", "").replace("_", "")
    if name not in choices:
        raise MedilabError(f"unknown CAM method {method!r} for {what}; choose one of {choices}")
    return name


class _NoBar:
    """Stands in for the ``tqdm`` module inside pytorch-grad-cam's AblationCAM: the channel
    batches are iterated without a progress bar (one bar per image flooded the console)."""

    @staticmethod
    def tqdm(iterable: object, *args: object, **kwargs: object) -> object:
        return iterable


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """AblationCAM without its per-image tqdm bar, for the duration of the block."""
    from pytorch_grad_cam import ablation_cam

    saved = ablation_cam.tqdm
    ablation_cam.tqdm = _NoBar  # type: ignore[assignment]
    try:
        yield
    finally:
        ablation_cam.tqdm = saved


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run in eval mode, then restore the model's train/eval state."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _logits(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    try:
        with torch.no_grad():
            out = model(batch)
    except TypeError as exc:  # forward(image, covariates) called without covariates
        raise MedilabError(
            f"{type(model).__name__} needs covariates to be explained; pass covariates= ({exc})"
        ) from exc
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise MedilabError(
            f"CAM for classifiers needs logits of shape (N, K); {type(model).__name__} returned "
            f"{type(out).__name__}"
        )
    return out


def _make_cam(
    method: str, model: nn.Module, layer: TargetLayer, batch_size: int, ratio: float
) -> GradCAM | SignedEigenCAM | AblationCAM:
    if method == "gradcam":
        return GradCAM(model, [layer.module], reshape_transform=layer.reshape)
    if method == "eigencam":
        return SignedEigenCAM(model, [layer.module], reshape_transform=layer.reshape)
    ablation = AblationLayerVit() if layer.channels_last else AblationLayer()
    return AblationCAM(
        model,
        [layer.module],
        reshape_transform=layer.reshape,
        ablation_layer=ablation,
        batch_size=batch_size,
        ratio_channels_to_ablate=ratio,
    )


def explain_classifier(
    model: nn.Module,
    image: torch.Tensor,
    method: str = "gradcam",
    target_class: int | None = None,
    covariates: torch.Tensor | None = None,
    target_layer: str | None = None,
    batch_size: int = 32,
    ratio_channels_to_ablate: float = 1.0,
) -> np.ndarray:
    """A (H, W) map in [0, 1] of where ``model`` looks in ``image`` (C, H, W) for a class.

    ``target_class`` defaults to the predicted class (GradCAM, AblationCAM; EigenCAM ignores it).
    ``target_layer`` is a dotted layer name; by default the last conv block or Swin's final norm.
    ``batch_size`` and ``ratio_channels_to_ablate`` bound AblationCAM's cost.
    """
    method = check_method(method, CLASSIFIER_METHODS, "classifiers")
    if image.ndim != 3:
        raise MedilabError(f"explain_classifier: image must be (C, H, W), got {tuple(image.shape)}")
    device = _device(model)
    batch = image.detach().to(device=device, dtype=torch.float32).unsqueeze(0)
    wrapped = model
    if covariates is not None:
        wrapped = FixedCovariates(model, torch.as_tensor(covariates, dtype=torch.float32)).to(
            device
        )
    with eval_mode(model):
        logits = _logits(wrapped, batch)
        num_classes = logits.shape[1]
        if target_class is not None and not 0 <= target_class < num_classes:
            raise MedilabError(
                f"target_class {target_class} is out of range for {num_classes} classes"
            )
        layer = find_target_layer(wrapped, lambda: wrapped(batch), _offset(target_layer, wrapped))
        targets = None if target_class is None else [ClassifierOutputTarget(target_class)]
        if method == "gradcam":
            batch = batch.clone().requires_grad_(True)  # gradients reach frozen backbones too
        cam = _make_cam(method, wrapped, layer, batch_size, ratio_channels_to_ablate)
        with cam, torch.enable_grad(), no_progress_bars():  # GradCAM: even under no_grad
            grayscale = cam(input_tensor=batch, targets=targets)
    return np.clip(np.nan_to_num(grayscale[0]), 0.0, 1.0).astype(np.float32)


def _offset(name: str | None, wrapped: nn.Module) -> str | None:
    """A layer name of the user's model as a name inside the covariate wrapper."""
    if name is None or not isinstance(wrapped, FixedCovariates):
        return name
    return f"model.{name}"
