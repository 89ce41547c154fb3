"""Name → model builder registry, in the spirit of ``timm.create_model``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from medilab.errors import ConfigError
from medilab.registry import Registry

ModelBuilder = Callable[..., nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model", "model.name", "medilab.models.builtin")
TIMM_PREFIX = "timm/"  # model.name "timm/<name>": any timm model as a feature extractor


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: make a builder available to ``create_model(name, ...)``."""
    return MODELS.register(name)


def available_models() -> list[str]:
    """Names of every registered model."""
    return MODELS.names()


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with keyword arguments from the config."""
    if name.startswith(TIMM_PREFIX) and "timm" in MODELS:
        name, kwargs = "timm", {**kwargs, "timm_name": name[len(TIMM_PREFIX):]}
    builder = MODELS.get(name)
    check_model_kwargs(name, kwargs, builder)
    try:
        return builder(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"model.kwargs for {name!r}: {exc}") from exc


ENGINE_ARGS = ("in_channels", "num_classes", "image_size", "num_covariates")  # set by the task


def check_model_kwargs(name: str, kwargs: dict[str, Any],
                       builder: ModelBuilder | None = None) -> None:
    """Refuse a keyword the builder of model ``name`` does not take (a typo such as
    ``slicez``), naming it and the ones it takes; every builder lists its arguments."""
    builder = builder or MODELS.get(name)
    params = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = [key for key in kwargs if key not in params]
    if unknown:
        takes = ", ".join(p for p in params if p not in ENGINE_ARGS and p != "timm_name")
        raise ConfigError(f"model.kwargs.{unknown[0]}: unknown argument for model {name!r} "
                          f"(it takes: {takes or 'nothing'})")
    backbone, inner = kwargs.get("backbone"), kwargs.get("backbone_kwargs")
    if isinstance(backbone, str) and backbone in MODELS and isinstance(inner, dict):
        try:  # a model built around a named backbone (slice fusion)
            check_model_kwargs(backbone, inner)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("model.kwargs.", "model.kwargs.backbone_kwargs.",
                                               1)) from None


def no_covariates(name: str, num_covariates: int) -> None:
    """Models without a covariate input refuse data that has covariates."""
    if num_covariates:
        raise ConfigError(f"model {name}: takes no covariates, but the data has "
                          f"{num_covariates}; use a model with a covariate head or remove "
                          "data.covariates")


def checkpoint_model_args(model_args: dict[str, Any]) -> dict[str, Any]:
    """``model_args`` for rebuilding a trained model whose weights come from its checkpoint:
    pretrained-weight options are switched off, so nothing looks for weight files."""
    args = dict(model_args)
    if args.get("pretrained"):
        args["pretrained"] = False
    if "weights" in args:
        args["weights"] = "none"
    args.pop("weights_path", None)
    return args
