"""Intensity tools: windowing, log, simplest color balance, normalisation, resize + pad."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_windowing

from medilab.errors import MedilabError
from medilab.io.intensity import (
    WINDOW_PRESETS,
    apply_window,
    log_transform,
    minmax_normalise,
    parse_window,
    percentile_normalise,
    resize,
    resize_info,
    simplest_color_balance,
    to_bits,
)


def test_apply_window_matches_pydicom_formula(dicom_file) -> None:
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"), stop_before_pixels=True)
    hu = np.linspace(-1200, 1200, 2001)
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0  # keep pydicom's output range 0..2^bits-1
    ds.PixelRepresentation, ds.BitsStored = 0, 16
    reference = apply_windowing(hu.copy(), ds) / 65535
    np.testing.assert_allclose(apply_window(hu, 40, 400), reference, atol=1e-6)


def test_window_edges_and_presets() -> None:
    x = np.array([-1000.0, -160.0, 40.0, 240.0, 1000.0])
    y = apply_window(x, 40, 400, function="LINEAR_EXACT")
    np.testing.assert_allclose(y, [0.0, 0.0, 0.5, 1.0, 1.0])
    assert parse_window("lung") == WINDOW_PRESETS["lung"] == (-600.0, 1500.0)
    assert parse_window("Bone") == (400.0, 1800.0)
    assert parse_window("-600,1500") == (-600.0, 1500.0)
    assert parse_window((40, 80)) == (40.0, 80.0)
    with pytest.raises(MedilabError, match="neither a preset"):
        parse_window("lungs")
    with pytest.raises(MedilabError, match="width"):
        parse_window("40,0")
    sig = apply_window(np.array([40.0]), 40, 400, function="SIGMOID")
    assert sig[0] == pytest.approx(0.5)


def test_log_transform() -> None:
    x = np.array([0.0, 1.0, np.e - 1, 3.0])
    expected = np.log1p(x) / np.log1p(3.0)
    np.testing.assert_allclose(log_transform(x), expected, rtol=1e-6)
    np.testing.assert_allclose(log_transform(np.array([0.0, 0.5, 1.0]))[1], np.log(1.5) / np.log(2))
    assert np.all(log_transform(np.full(4, 7.0)) == 0)


def test_simplest_color_balance_saturates_half_percent_each_side() -> None:
    x = np.arange(1000, dtype=np.float64)
    y = simplest_color_balance(x, percent=10)  # 5 % dark + 5 % bright
    assert y.dtype == np.float32
    assert np.sum(y == 0.0) == 50 and np.sum(y == 1.0) == 50
    low, high = np.percentile(x, [5, 95])
    assert y[500] == pytest.approx((500 - low) / (high - low))
    assert np.all(np.diff(y) >= 0)  # monotone stretch
    np.testing.assert_allclose(simplest_color_balance(x, 0), x / 999, rtol=1e-6)


def test_simplest_color_balance_per_channel() -> None:
    rng = np.random.default_rng(0)
    rgb = np.stack([rng.uniform(10, 20, (32, 32)), rng.uniform(100, 200, (32, 32)),
                    rng.uniform(0, 1, (32, 32))], axis=-1)
    y = simplest_color_balance(rgb, 2, channel_axis=-1)
    for c in range(3):
        assert y[..., c].min() == 0 and y[..., c].max() == 1
    with pytest.raises(MedilabError):
        simplest_color_balance(rgb, 100)


def test_percentile_minmax_and_bits() -> None:
    x = np.arange(101, dtype=float)
    y = percentile_normalise(x, 10, 90)
    assert y[10] == 0 and y[90] == 1 and y[50] == pytest.approx(0.5) and y[0] == 0 and y[100] == 1
    np.testing.assert_allclose(minmax_normalise(x), x / 100)
    assert to_bits(np.array([0, 0.5, 1.0]), 8).tolist() == [0, 128, 255]
    assert to_bits(np.array([0, 1.0]), 16).dtype == np.uint16
    with pytest.raises(MedilabError):
        to_bits(x, 12)


def test_resize_with_aspect_pad_returns_scale_and_padding() -> None:
    image = np.ones((100, 50), dtype=np.float32)
    out, info = resize(image, 64)
    assert out.shape == (64, 64)
    assert (info.scale_y, info.scale_x) == (0.64, 0.64)
    assert (info.pad_top, info.pad_bottom, info.pad_left, info.pad_right) == (0, 0, 16, 16)
    assert out[:, :16].max() == 0 and out[:, 48:].max() == 0
    np.testing.assert_allclose(out[:, 16:48], 1.0, atol=1e-6)
    boxes = np.array([[0, 0, 50, 100], [10, 20, 30, 40]])
    moved = info.boxes_to_output(boxes)
    np.testing.assert_allclose(moved[0], [16, 0, 48, 64])
    np.testing.assert_allclose(moved[1], [16 + 6.4, 12.8, 16 + 19.2, 25.6])
    np.testing.assert_allclose(info.boxes_to_input(moved), boxes)
    assert info == resize_info((100, 50), 64)


def test_resize_stretch_dtype_and_colour() -> None:
    mask = np.zeros((40, 80), dtype=np.uint8)
    mask[10:30, 20:60] = 255
    out, info = resize(mask, (20, 20), keep_aspect=False, interpolation="nearest")
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 255}
    assert (info.scale_y, info.scale_x, info.pad_left, info.pad_top) == (0.5, 0.25, 0, 0)
    rgb = np.zeros((30, 60, 3), dtype=np.uint8)
    out, info = resize(rgb, (30, 30), pad_value=7)
    assert out.shape == (30, 30, 3) and info.pad_top == 7 and info.pad_bottom == 8
    assert out[0, 0, 0] == 7 and out[15, 15, 0] == 0
