"""``read_csv_table``: one-line errors naming the file; ``cell_float``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from medilab.errors import InputFileError
from medilab.io.tables import cell_float, read_csv_table


def test_reads_a_table_with_dtypes(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("sample_id,label\n007,1\n010,0\n")
    table = read_csv_table(path, dtype={"sample_id": str})
    assert table["sample_id"].tolist() == ["007", "010"] and table["label"].sum() == 1
    assert list(read_csv_table(path, nrows=0).columns) == ["sample_id", "label"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "file not found"),
        ("", "file is empty"),
        ("\n\n", "file is empty (no header line)"),
        ("a,b\n", "has a header but no rows"),
        ('a,b\n1,"unclosed\n', "not a readable CSV (Error tokenizing data. C error: EOF inside"),
    ],
)
def test_errors_are_one_line_and_name_the_file(tmp_path: Path, content, problem) -> None:
    path = tmp_path / "t.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputFileError) as info:
        read_csv_table(path)
    assert str(info.value).startswith(f"{path}: {problem}")
    assert "\n" not in str(info.value)


def test_header_only_allowed_when_asked_and_folder_refused(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,b\n")
    assert read_csv_table(tmp_path / "t.csv", allow_empty=True).empty
    with pytest.raises(InputFileError, match="is a folder"):
        read_csv_table(tmp_path)


def test_cell_float() -> None:
    assert cell_float("0.5") == 0.5 and cell_float(3) == 3.0
    assert math.isnan(cell_float(None)) and math.isnan(cell_float("n/a"))
