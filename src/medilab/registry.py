"""A name → object registry, the one shape behind models, task families and data sources.

Each registry knows the module that registers medilab's own entries and imports it on first
use, so ``medilab.config`` can look up a data source without importing the data layer itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from medilab.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries registered with :meth:`register`; :meth:`get` names the choices on a miss."""

    def __init__(self, kind: str, field: str, builtin_module: str) -> None:
        self.kind = kind  # "model", "task", "data source"
        self.field = field  # the config field naming an entry, for error messages
        self._builtin_module = builtin_module
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: make ``entry`` available as ``name``."""

        def decorator(entry: T) -> T:
            if name in self._entries and self._entries[name] is not entry:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return decorator

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._load_builtin()
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """The entry registered as ``name``; a ConfigError listing the choices otherwise."""
        self._load_builtin()
        if name not in self._entries:
            raise ConfigError(
                f"{self.field}: unknown {self.kind} {name!r}; available: {', '.join(self.names())}"
            )
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        self._load_builtin()
        return name in self._entries

    def _load_builtin(self) -> None:
        if not self._loaded:
            self._loaded = True
            importlib.import_module(self._builtin_module)


# The task families (``task:``) and data sources (``data.source:``); models keep theirs in
# medilab.models.registry. Entries are classes from higher layers, so they are typed loosely.
TASKS: Registry[type] = Registry("task", "task", "medilab.tasks.builtin")
SOURCES: Registry[type] = Registry("data source", "data.source", "medilab.data.sources.builtin")
