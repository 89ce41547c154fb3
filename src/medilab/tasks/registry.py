"""Task family name → implementation (``task:`` in the config)."""

from __future__ import annotations

from medilab.registry import TASKS
from medilab.tasks.base import TaskFamily


def register_task(family: type[TaskFamily]) -> type[TaskFamily]:
    """Class decorator: make ``family`` available as ``task: <family.name>``."""
    return TASKS.register(family.name)(family)


def get_task_family(name: str) -> TaskFamily:
    """The task family for ``config.task``."""
    return TASKS.get(name)()


def find_task_family(name: str | None) -> TaskFamily | None:
    """The family named ``name``, or None for a missing or unknown name (pages of a run folder
    written by another version still render)."""
    return get_task_family(name) if name and name in TASKS else None
