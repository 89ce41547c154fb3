"""One classification head for every image backbone: image features ⊕ covariates → logits."""

from __future__ import annotations

import torch
from torch import nn

from medilab.errors import ConfigError
from medilab.models.registry import register_model


class FeatureClassifier(nn.Module):
    """``backbone(image)`` → (N, num_features), concatenated with ``covariate_scale`` ×
    covariates (N, num_covariates), → [Linear → ReLU → Dropout] when ``hidden`` > 0 →
    Dropout → Linear → (N, num_classes) logits.

    ``backbone=None`` (with ``num_features=0``) makes a model of the covariates alone that
    ignores the image.
    """

    def __init__(
        self,
        backbone: nn.Module | None,
        num_features: int,
        num_covariates: int = 0,
        num_classes: int = 2,
        hidden: int = 0,
        dropout: float = 0.0,
        covariate_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if backbone is None and num_features:
            raise ValueError("num_features must be 0 without a backbone")
        if num_features + num_covariates == 0:
            raise ValueError("the head has no inputs: no image features and no covariates")
        self.backbone = backbone
        self.num_features = num_features
        self.num_covariates = num_covariates
        self.covariate_scale = covariate_scale
        layers: list[nn.Module] = []
        width = num_features + num_covariates
        if hidden > 0:
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = hidden
        layers += [nn.Dropout(dropout), nn.Linear(width, num_classes)]
        self.head = nn.Sequential(*layers)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """The backbone's (N, num_features) image features."""
        assert self.backbone is not None
        return self.backbone(image)

    def forward(
        self, image: torch.Tensor | None, covariates: torch.Tensor | None = None
    ) -> torch.Tensor:
        parts: list[torch.Tensor] = []
        if self.backbone is not None:
            if image is None:
                raise ValueError("this model needs an image")
            parts.append(self.features(image).flatten(1))
        if not self.num_covariates and covariates is not None and covariates.shape[-1]:
            raise ValueError("covariates given to a model built without them (num_covariates=0)")
        if self.num_covariates:
            if covariates is None:
                raise ValueError(f"this model needs {self.num_covariates} covariates per sample")
            if covariates.shape[-1] != self.num_covariates:
                raise ValueError(
                    f"covariates have {covariates.shape[-1]} values per sample, the model was "
                    f"built for {self.num_covariates}"
                )
            reference = parts[0] if parts else covariates
            parts.append(self.covariate_scale * covariates.to(reference.dtype).flatten(1))
        return self.head(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])


@register_model("covariates_only")
def covariates_only(
    num_classes: int,
    num_covariates: int = 0,
    in_channels: int | None = None,
    image_size: list[int] | None = None,
    hidden: int = 0,
    dropout: float = 0.0,
    covariate_scale: float = 1.0,
) -> FeatureClassifier:
    """Logistic regression (``hidden`` = 0) or a one-hidden-layer MLP on the covariates alone;
    the image is ignored. The baseline that shows what the image adds."""
    if num_covariates < 1:
        raise ConfigError("model covariates_only: the data has no covariates to classify from")
    return FeatureClassifier(
        None, 0, num_covariates, num_classes, hidden=hidden, dropout=dropout,
        covariate_scale=covariate_scale,
    )
