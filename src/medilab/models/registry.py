"""Name → model builder registry, in the spirit of ``timm.create_model``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from medilab.errors import ConfigError

ModelBuilder = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: make a builder available to ``create_model(name, ...)``."""

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = builder
        return builder

    return decorator


def available_models() -> list[str]:
    """Names of every registered model."""
    _import_builtin_models()
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with keyword arguments from the config."""
    _import_builtin_models()
    if name not in _REGISTRY:
        raise ConfigError(
            f"model.name: unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}"
        )
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as exc:
        raise ConfigError(f"model.kwargs for {name!r}: {exc}") from exc


def _import_builtin_models() -> None:
    """Import the modules that register medilab's own models."""
    from medilab.models import builtin  # noqa: F401
