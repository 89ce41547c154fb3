"""Small helpers that keep user-facing messages on one short line."""

from __future__ import annotations

from collections.abc import Iterable

MAX_MESSAGE = 160
MAX_NAMES = 8


def one_line(exc: BaseException, limit: int = MAX_MESSAGE) -> str:
    """An exception's text on one line, at most ``limit`` characters (its type when empty)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_list(names: Iterable[object], limit: int = MAX_NAMES) -> str:
    """``a, b, c`` or, past ``limit`` names, ``a, b, …, h … and 777 more``."""
    items = [str(n) for n in names]
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:limit])} … and {len(items) - limit} more"
