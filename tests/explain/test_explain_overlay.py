"""PNG overlays of CAMs (medilab.explain.overlay)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medilab.errors import MedilabError
from medilab.explain.overlay import display_rgb, overlay_png, scale_boxes


def read_png(path) -> np.ndarray:
    with Image.open(path) as png:
        return np.asarray(png.convert("RGB"))


def test_the_overlay_has_the_display_image_size_and_the_heat_where_the_cam_is_high(tmp_path):
    cam = np.zeros((8, 8), dtype=np.float32)
    cam[:4, :4] = 1.0  # hot top-left quarter
    picture = read_png(overlay_png(np.full((40, 60), 0.5), cam, tmp_path / "cam.png"))
    assert picture.shape == (40, 60, 3)
    hot, cold = picture[5, 5].astype(int), picture[35, 55].astype(int)
    assert hot[0] > hot[2] and cold[2] > cold[0]  # jet colour map: red where 1, blue where 0


def test_size_resizes_image_and_cam_and_boxes_follow_in_red(tmp_path):
    cam = np.random.default_rng(0).random((10, 10)).astype(np.float32)
    out = overlay_png(
        np.zeros((10, 10, 3)),
        cam,
        tmp_path / "cam.png",
        boxes=np.array([[2, 2, 5, 5]]),
        size=(100, 100),
    )
    picture = read_png(out)
    assert picture.shape == (100, 100, 3)
    assert tuple(picture[35, 20]) == (255, 0, 0) and tuple(picture[20, 35]) == (255, 0, 0)
    assert tuple(picture[35, 35]) != (255, 0, 0)


def test_save_raw_writes_the_resized_map_and_leaves_no_temporary_files(tmp_path):
    cam = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    out = overlay_png(np.zeros((4, 4)), cam, tmp_path / "cam.png", size=(8, 12), save_raw=True)
    raw = np.load(tmp_path / "cam.npy")
    assert raw.shape == (8, 12) and raw.min() >= 0 and raw.max() <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.npy", "cam.png"]
    assert out == tmp_path / "cam.png"


def test_scale_boxes_maps_xyxy_between_sizes():
    boxes = scale_boxes(np.array([[10, 20, 30, 40]]), from_size=(100, 50), to_size=(200, 200))
    np.testing.assert_allclose(boxes, [[40, 40, 120, 80]])


def test_display_images_are_brought_to_rgb_in_0_1():
    assert display_rgb(np.full((2, 3), 255, dtype=np.uint8)).max() == pytest.approx(1.0)
    hounsfield = display_rgb(np.array([[-1000.0, 0.0], [500.0, 1000.0]]))
    assert hounsfield.shape == (2, 2, 3) and hounsfield.min() == 0 and hounsfield.max() == 1
    with pytest.raises(MedilabError, match="display image"):
        display_rgb(np.zeros((2, 3, 4)))


def test_a_cam_that_is_not_2d_is_refused(tmp_path):
    with pytest.raises(MedilabError, match="CAM must be"):
        overlay_png(np.zeros((4, 4)), np.zeros((1, 4, 4)), tmp_path / "cam.png")
    assert not list(tmp_path.iterdir())


def test_small_overlays_are_enlarged_titled_and_get_a_colour_scale(tmp_path):
    from medilab.explain.overlay import colour_scale

    image = np.zeros((64, 48), np.uint8)
    cam = np.zeros((8, 6), np.float32)
    cam[:, 3:] = 1.0
    out = overlay_png(image, cam, tmp_path / "x.png", save_raw=True, min_size=256,
                      title="gradcam: predicted finding (p 0.87)", colorbar=True)
    picture = np.asarray(Image.open(out))
    assert picture.shape[1] == 256 and picture.shape[0] > 256 * 64 / 48  # enlarged, + bands
    assert np.load(tmp_path / "x.npy").shape == (64, 48)  # the raw map keeps the image's size
    assert (picture[:10] == 255).mean() < 1  # the title band holds dark text
    scale = colour_scale(100, 4)
    assert scale[0, 0, 2] > scale[0, 0, 0] and scale[0, -1, 0] > scale[0, -1, 2]  # blue → red
