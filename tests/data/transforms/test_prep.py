"""Pixel helpers kept from the manifest datasets: 2.5D stacking with edge replication, and the
volume readers it runs on (DICOM series ordered by position, NIfTI axes)."""

from __future__ import annotations

import numpy as np

from medilab.data.formats.pixels import read_array
from medilab.data.transforms.prep import ImagePrep, channels_first, stack_slices


def _volume(depth=5, size=4):
    """Slice i holds the value i."""
    return np.broadcast_to(np.arange(depth, dtype=np.float32)[:, None, None],
                           (depth, size, size)).copy()


def test_stack_slices_replicates_edges():
    volume = _volume()
    assert stack_slices(volume, 2)[:, 0, 0].tolist() == [1, 2, 3]
    assert stack_slices(volume, 0)[:, 0, 0].tolist() == [0, 0, 1]
    assert stack_slices(volume, 4)[:, 0, 0].tolist() == [3, 4, 4]
    assert stack_slices(volume, 0, k=5)[:, 0, 0].tolist() == [0, 0, 0, 1, 2]
    along_last = np.moveaxis(volume, 0, -1)
    assert stack_slices(along_last, 4, axis=2)[:, 0, 0].tolist() == [3, 4, 4]


def test_channels_first_layouts():
    rgb = np.arange(5 * 6 * 3, dtype=np.float32).reshape(5, 6, 3)
    assert channels_first(rgb).shape == (3, 5, 6)
    assert channels_first(rgb, 1)[0, 0, 0] == rgb[0, 0].mean()
    assert channels_first(np.zeros((5, 6)), 3).shape == (3, 5, 6)
    assert channels_first(np.zeros((5, 6, 4))).shape == (3, 5, 6)  # alpha dropped


def _dicom_series(folder, depth=4):
    """CT slices whose stored value is 10*i at z = 2*i, written in reverse file order."""
    import pydicom
    from pydicom.data import get_testdata_file

    folder.mkdir()
    for i in range(depth):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * i]
        ds.InstanceNumber = i + 1
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{i}"
        ds.PixelData = np.full((ds.Rows, ds.Columns), 10 * i, np.int16).tobytes()
        ds.save_as(folder / f"slice_{depth - i}.dcm")
    return folder


def test_volume_reading_dicom_series_and_nifti(tmp_path):
    import nibabel as nib

    series = _dicom_series(tmp_path / "series")
    # NIfTI stores (x, y, z); medilab.io returns (z, y, x): slice i holds i
    nib.save(nib.Nifti1Image(np.moveaxis(_volume(3, 6), 0, -1), np.eye(4)), tmp_path / "v.nii.gz")
    ct = np.asarray(read_array(str(series)), np.float32)
    assert ct.shape == (4, 128, 128)
    # modality LUT applied (intercept -1024) and slices ordered by position, not file name
    assert ct[:, 0, 0].tolist() == [-1024.0, -1014.0, -1004.0, -994.0]
    assert stack_slices(ct, 3)[:, 0, 0].tolist() == [-1004.0, -994.0, -994.0]
    nii = np.asarray(read_array(str(tmp_path / "v.nii.gz")))
    assert nii.shape == (3, 6, 6) and nii[:, 2, 1].tolist() == [0.0, 1.0, 2.0]


def test_one_grey_and_unit_range_rule_for_every_datamodule():
    from medilab.data.datamodules.detection import Preprocess, prepare_pixels
    from medilab.data.datamodules.segmentation import prepare_image
    from medilab.data.transforms.prep import PrepConfig, to_grey, to_unit_range

    colours = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [30, 60, 90]]], np.uint8)
    rgb = np.tile(colours, (3, 3, 1))  # (6, 6, 3): large enough to read as channels-last
    grey = np.tile(np.array([[85, 85], [85, 60]], np.float32) / 255, (3, 3))  # mean of R, G, B
    np.testing.assert_allclose(to_grey(to_unit_range(rgb), -1), grey, atol=1e-7)
    from_table = ImagePrep(PrepConfig(channels=1))(rgb)[0]
    from_segmentation = prepare_image(rgb, "grey", normalize="none")[0]
    from_detection = prepare_pixels(rgb, Preprocess(size=6, channels=1))[0][0]
    for image in (from_table, from_segmentation, from_detection):
        np.testing.assert_array_equal(image, from_table)
    np.testing.assert_allclose(from_table, grey, atol=1e-7)
    # 12-bit values in a 16-bit container: min–max per image, not / 65535 (which left them dark)
    twelve_bit = np.tile(np.array([[0, 1024], [2048, 4095]], np.uint16), (3, 3))
    expected = twelve_bit.astype(np.float32) / 4095
    for image in (to_unit_range(twelve_bit), prepare_image(twelve_bit, normalize="none")[0],
                  prepare_pixels(twelve_bit, Preprocess(size=6))[0][0]):
        np.testing.assert_allclose(image, expected, atol=1e-6)
    inside = np.array([[0.25, 0.5]], np.float32)  # floats already in 0..1 are kept
    np.testing.assert_array_equal(to_unit_range(inside), inside)
