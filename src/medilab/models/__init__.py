"""Plain nn.Modules and the name → builder registry."""

from medilab.models.registry import available_models, create_model, register_model

__all__ = ["available_models", "create_model", "register_model"]
