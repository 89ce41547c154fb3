"""medilab: deep learning for medical image analysis."""

from __future__ import annotations

from typing import Any

from medilab.version import package_version

__version__ = package_version()
__all__ = ["evaluate", "predict", "train"]


def __getattr__(name: str) -> Any:
    """``from medilab import train, evaluate, predict``; ``import medilab`` stays light."""
    if name in __all__:
        from medilab import api

        return getattr(api, name)
    raise AttributeError(f"module 'medilab' has no attribute {name!r}")
