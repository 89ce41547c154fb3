"""One owner for the file suffixes medilab reads (``medilab.io.reader``)."""

from __future__ import annotations

import pytest

from medilab.io.reader import file_suffix, is_image_file, is_volume_file, volume_stem


@pytest.mark.parametrize(("name", "suffix", "image", "volume", "stem"), [
    ("CT.NII.GZ", ".nii.gz", True, True, "CT"),
    ("a.b.nrrd", ".nrrd", True, True, "a.b"),
    ("x.png", ".png", True, False, "x"),
    ("scan.DCM", ".dcm", True, False, "scan"),
    ("arr.npy", ".npy", True, False, "arr"),
    ("notes.gz", ".gz", False, False, "notes"),
    ("README", "", False, False, "README"),
])
def test_suffix_rules(name, suffix, image, volume, stem):
    assert file_suffix(name) == suffix
    assert is_image_file(name) is image
    assert is_volume_file(name) is volume
    assert volume_stem(name) == stem
