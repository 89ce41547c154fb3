"""Fixtures for the io tests: real DICOM files shipped with pydicom / pydicom-data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


def _dicom_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    try:
        found = get_testdata_file(name)
    except Exception:  # e.g. a download attempted offline
        found = None
    if not found:
        pytest.skip(f"pydicom test file {name} not available")
    return Path(found)


@pytest.fixture
def dicom_file() -> Callable[[str], Path]:
    """``dicom_file("CT_small.dcm")``: a pydicom test file (offline via pydicom-data);
    the test skips when it is missing."""
    return _dicom_file
