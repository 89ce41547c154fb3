"""medilab's version, read from the installed package's metadata: lower layers ask here instead
of importing ``medilab/__init__`` (which reaches up to the API)."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version


@cache
def package_version() -> str:
    """The installed medilab version (``0+unknown`` when run from a source tree not installed)."""
    try:
        return version("medilab")
    except PackageNotFoundError:
        return "0+unknown"
