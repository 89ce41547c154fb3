"""Read a CSV table into pandas with one-line errors naming the file."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from medilab.errors import InputFileError
from medilab.io.messages import one_line


def read_csv_table(
    path: str | os.PathLike[str],
    *,
    dtype: Any = None,
    allow_empty: bool = False,
    **read_options: Any,
) -> pd.DataFrame:
    """``pd.read_csv(path)``; a missing, unreadable or empty file raises ``InputFileError``.

    "Empty" is a file of zero bytes or, unless ``allow_empty``, a header without rows.
    ``dtype`` and ``read_options`` go to ``pandas.read_csv`` (e.g. ``dtype={"sample_id": str}``,
    ``nrows=0`` to read the header only — a header-only read is never "empty").
    """
    path = Path(path)
    if path.is_dir():
        raise InputFileError(path, "is a folder, expected a CSV file")
    if not path.is_file():
        raise InputFileError(path, "file not found")
    try:
        if path.stat().st_size == 0:
            raise InputFileError(path, "file is empty")
        table = pd.read_csv(path, dtype=dtype, **read_options)
    except InputFileError:
        raise
    except pd.errors.EmptyDataError:
        raise InputFileError(path, "file is empty (no header line)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise InputFileError(path, f"not a readable CSV ({one_line(exc)})") from None
    if table.empty and not allow_empty and read_options.get("nrows") != 0:
        raise InputFileError(path, "has a header but no rows")
    return table


def cell_float(value: Any) -> float:
    """A table cell (or JSON value) as ``float``; ``NaN`` when missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
