"""Name → model builder registry, in the spirit of ``timm.create_model``."""

from __future__ import annotations

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
    try:
        return builder(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"model.kwargs for {name!r}: {exc}") from exc


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
