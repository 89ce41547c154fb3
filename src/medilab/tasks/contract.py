"""Checking a source's ``data:`` section against what a task family needs (a protocol), so a
family never imports or ``isinstance``-checks a concrete source; reading a section a family
owns (``TaskFamily.config_sections``)."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from medilab.errors import ConfigError


def protocol_members(protocol: type) -> list[str]:
    """The attribute and property names a protocol class (and its protocol bases) declares."""
    names: set[str] = set()
    for klass in protocol.__mro__:
        if klass is Protocol or klass is object or not getattr(klass, "_is_protocol", False):
            continue
        names.update(getattr(klass, "__annotations__", {}))
        names.update(n for n, v in vars(klass).items() if isinstance(v, property))
    return sorted(names)


def require(data: Any, protocol: type, task: str) -> Any:
    """``data`` when it provides every member of ``protocol``; else a one-line ConfigError
    naming the source and what its config lacks."""
    missing = [name for name in protocol_members(protocol) if not hasattr(data, name)]
    if missing:
        source = getattr(data, "source", type(data).__name__)
        raise ConfigError(f"data.source {source!r} cannot feed the {task} task: its config has "
                          f"no {', '.join(missing)}")
    return data


Section = TypeVar("Section", bound=BaseModel)


def owned_section(config: Any, name: str, model: type[Section], task: str) -> Section:
    """The top-level section ``name`` of a config validated for ``task`` (which owns it, so
    validation always fills it in); a ConfigError for a config validated otherwise."""
    section = getattr(config, name, None)
    if not isinstance(section, model):
        raise ConfigError(f"{task} needs its {name}: section; validate the config with "
                          f"task: {task}")
    return section
