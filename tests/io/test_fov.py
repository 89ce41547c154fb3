import numpy as np
from PIL import Image

from medilab.io.fov import estimate_fov


def test_bright_disc_on_black_is_found_with_dark_vessels_inside():
    yy, xx = np.mgrid[:120, :140]
    disc = (yy - 60) ** 2 + (xx - 70) ** 2 < 50 ** 2
    image = np.zeros((120, 140, 3), np.uint8)
    image[disc] = (170, 80, 40)
    image[60, 30:110] = (20, 10, 5)  # a dark vessel across the disc stays inside
    fov = estimate_fov(image)
    inside = fov[disc].mean()
    assert inside > 0.95 and not fov[~disc].any()  # the one-pixel rim is eroded away
    assert fov[60, 70]


def test_real_drive_image_matches_its_mask(medilab_data):
    folder = medilab_data / "drive" / "training"
    image = np.asarray(Image.open(folder / "images" / "21_training.tif"))
    truth = np.asarray(Image.open(folder / "mask" / "21_training_mask.gif")) > 0
    fov = estimate_fov(image)
    iou = (fov & truth).sum() / (fov | truth).sum()
    assert iou > 0.97
