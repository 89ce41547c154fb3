"""HTML helpers shared by the report and compare pages: templates, embedded images, numbers."""

from __future__ import annotations

import base64
import io
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from PIL import Image

from medilab.io.atomic import write_text

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("medilab.reports", "templates"),
        autoescape=True,  # every template: names from users (files, classes) are text
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["interval"] = lambda v: format_interval(*v)
    env.filters["number"] = format_number
    return env


def render_page(template: str, out: Path, **context: Any) -> Path:
    """Render ``templates/<template>`` with ``context`` and write it to ``out`` atomically."""
    html = _environment().get_template(template).render(**context)
    return write_text(out, html)


def data_uri(path: Path) -> str | None:
    """The image at ``path`` as a ``data:`` URI, or ``None`` if it is missing or not an image."""
    path = Path(path)
    mime = IMAGE_TYPES.get(path.suffix.lower())
    if mime is None or not path.is_file():
        return None
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def thumbnail_uri(path: Path, max_side: int = 480, max_bytes: int = 150_000) -> str | None:
    """A ``data:`` URI of the image shrunk to ``max_side`` pixels (JPEG for colour images).

    Small files are embedded unchanged; this keeps galleries of full-size overlays light.
    """
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in IMAGE_TYPES:
        return None
    try:
        with Image.open(path) as image:
            if max(image.size) <= max_side and path.stat().st_size <= max_bytes:
                return data_uri(path)
            image.thumbnail((max_side, max_side))
            buffer = io.BytesIO()
            if image.mode in ("RGB", "L"):
                image.save(buffer, format="JPEG", quality=85)
                mime = "image/jpeg"
            else:
                image.save(buffer, format="PNG", optimize=True)
                mime = "image/png"
    except OSError:
        return None
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def is_wide(path: Path, ratio: float = 2.15) -> bool:
    """Whether an image is much wider than tall (it then spans two grid columns)."""
    try:
        with Image.open(path) as image:
            return image.width > ratio * image.height
    except OSError:
        return False


def format_number(value: float | None) -> str:
    """Three decimals (one for large values); an en dash for a missing value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.1f}" if abs(value) >= 1000 else f"{value:.3f}"


def format_interval(value: float, low: float = math.nan, high: float = math.nan) -> str:
    """``0.971 [0.955, 0.983]``; just the value when the interval is missing."""
    text = format_number(value)
    if math.isfinite(low) and math.isfinite(high) and text != "–":
        text += f" [{format_number(low)}, {format_number(high)}]"
    return text
