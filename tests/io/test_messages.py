"""One-line exception text and shortened name lists."""

from __future__ import annotations

from medilab.io.messages import one_line, short_list


def test_one_line_joins_and_truncates() -> None:
    assert one_line(ValueError("bad\n  value\tthere")) == "bad value there"
    assert one_line(KeyError()) == "KeyError"
    long = one_line(ValueError("x" * 500))
    assert len(long) == 160 and long.endswith("...")


def test_short_list() -> None:
    assert short_list(["a", "b"]) == "a, b"
    names = [f"pixel{i}" for i in range(784)]
    assert short_list(names) == (
        "pixel0, pixel1, pixel2, pixel3, pixel4, pixel5, pixel6, pixel7 … and 776 more"
    )
    assert short_list(range(5), limit=2) == "0, 1 … and 3 more"
