"""DICOM reading and standardisation on real files shipped with pydicom / pydicom-data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import UID

from medilab.errors import InputFileError, MedilabError
from medilab.io.dicom import (
    decode_pixels,
    read_dataset,
    read_dicom,
    read_dicom_series,
    standardise_dicom,
)
from medilab.io.intensity import apply_window
from medilab.io.reader import read_image


def test_ct_hounsfield_units_equal_pydicom_modality_lut(dicom_file) -> None:
    path = dicom_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    expected = apply_modality_lut(ds.pixel_array, ds)
    assert image.array.dtype == np.float32
    np.testing.assert_array_equal(image.array, expected)
    assert image.array.min() < -500  # air in HU, not raw stored values
    assert image.spacing == pytest.approx((0.661468, 0.661468))
    assert image.meta["modality"] == "CT" and not image.is_volume


def test_monochrome1_voi_window_matches_pydicom_and_is_inverted(dicom_file) -> None:
    path = dicom_file("RG1_UNCR.dcm")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    ours = standardise_dicom(ds)  # first window, float in [0, 1]
    windowed = apply_voi_lut(ds.pixel_array, ds)
    reference = 1.0 - windowed / (2**ds.BitsStored - 1)  # pydicom's output range is 0..2^bits-1
    assert ours.dtype == np.float32 and ours.min() >= 0 and ours.max() <= 1
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    as8 = standardise_dicom(ds, output="uint8")
    assert as8.dtype == np.uint8
    np.testing.assert_array_equal(as8, np.rint(reference * 255).astype(np.uint8))


def test_jpeg2000_lossless_decodes_equal_to_uncompressed(dicom_file) -> None:
    compressed = read_dicom(dicom_file("RG1_J2KR.dcm"))
    plain = read_dicom(dicom_file("RG1_UNCR.dcm"))
    assert compressed.meta["transfer_syntax"].startswith("JPEG 2000")
    np.testing.assert_array_equal(compressed.array, plain.array)


def test_jpeg_baseline_chest_cr_decodes(dicom_file, medilab_data: Path) -> None:
    path = medilab_data / "dicom" / "siim_cr_sample.dcm"
    if not path.exists():
        pytest.skip("siim_cr_sample.dcm not present")
    image = read_dicom(path, standardise=True, output="uint8")
    assert image.meta["transfer_syntax"] == "JPEG Baseline (Process 1)"
    assert image.array.shape == (1024, 1024) and image.array.dtype == np.uint8
    assert image.array.std() > 10  # a real radiograph, not a blank
    assert image.spacing == pytest.approx((0.168, 0.168))


def test_multiframe_reads_as_stack(dicom_file) -> None:
    path = dicom_file("emri_small.dcm")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    assert image.array.shape == (10, 64, 64) and image.is_volume
    np.testing.assert_array_equal(image.array, ds.pixel_array)
    unit = read_dicom(path, standardise=True, window=None)
    assert unit.array.min() == 0.0 and unit.array.max() == 1.0


def _write_series(
    template_path: Path, folder: Path, positions: list[float], orientation: list[float]
) -> None:
    """Slices of CT_small, each filled with its slice index, at the given positions along the
    normal of ``orientation``; written in shuffled file order."""
    template = pydicom.dcmread(template_path)
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row, col)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(positions))
    folder.mkdir(parents=True, exist_ok=True)
    for file_index, slice_index in enumerate(order):
        ds = template.copy()
        pixels = np.full((ds.Rows, ds.Columns), 100 * int(slice_index), dtype=np.int16)
        ds.PixelData = pixels.tobytes()
        origin = np.array([-10.0, 20.0, 5.0]) + positions[slice_index] * normal
        ds.ImagePositionPatient = [float(v) for v in origin]
        ds.ImageOrientationPatient = orientation
        ds.InstanceNumber = int(len(positions) - slice_index)  # reversed: positions must win
        ds.save_as(folder / f"slice{file_index:02d}.dcm")


@pytest.mark.parametrize(
    "orientation",
    [[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.6, -0.8]],  # axial and oblique
)
def test_series_folder_sorted_by_position_on_normal(
    dicom_file, tmp_path: Path, orientation: list
) -> None:
    positions = [0.0, 2.5, 5.0, 7.5, 10.0]
    _write_series(dicom_file("CT_small.dcm"), tmp_path / "series", positions, orientation)
    (tmp_path / "series" / "notes.txt").write_text("not an image")
    image = read_image(tmp_path / "series")
    assert image.array.shape == (5, 128, 128) and image.is_volume
    firsts = image.array[:, 0, 0] + 1024  # HU back to stored values (intercept -1024)
    np.testing.assert_array_equal(firsts, [0, 100, 200, 300, 400])
    assert image.spacing == pytest.approx((2.5, 0.661468, 0.661468))
    assert image.meta["slice_spacing_source"] == "positions"


def test_series_falls_back_to_instance_number(dicom_file, tmp_path: Path) -> None:
    axial = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    _write_series(dicom_file("CT_small.dcm"), tmp_path / "s", [0.0, 1.0, 2.0], axial)
    for path in (tmp_path / "s").iterdir():
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        ds.save_as(path)
    image = read_dicom_series(tmp_path / "s")
    firsts = image.array[:, 0, 0] + 1024
    np.testing.assert_array_equal(firsts, [200, 100, 0])  # InstanceNumber was reversed
    assert image.meta["slice_spacing_source"] == "SpacingBetweenSlices"
    assert image.spacing[0] == pytest.approx(5.0)


@pytest.mark.parametrize("keep", [0.5, 0.01])
def test_truncated_dicom_gives_one_line_error(dicom_file, tmp_path: Path, keep: float) -> None:
    data = dicom_file("CT_small.dcm").read_bytes()
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(data[: max(200, int(len(data) * keep))])
    with pytest.raises(InputFileError) as info:
        read_image(bad)
    message = str(info.value)
    assert "\n" not in message and str(bad) in message
    assert "not a readable DICOM file (" in message


def test_not_dicom_at_all(tmp_path: Path) -> None:
    fake = tmp_path / "fake.dcm"
    fake.write_text("hello, I am text\n" * 20)
    with pytest.raises(InputFileError, match="not a readable DICOM file"):
        read_dataset(fake)


def test_unsupported_transfer_syntax_is_named(dicom_file) -> None:
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")  # MPEG2 video
    with pytest.raises(InputFileError, match="unsupported transfer syntax MPEG2"):
        decode_pixels(ds, "video.dcm")


def test_window_choices(dicom_file) -> None:
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    hu = apply_modality_lut(ds.pixel_array, ds)
    lung = standardise_dicom(ds, window="lung")
    np.testing.assert_allclose(lung, apply_window(hu, -600, 1500))
    np.testing.assert_allclose(standardise_dicom(ds, window=(40, 400)), apply_window(hu, 40, 400))
    # CT_small has no window of its own: "first" falls back to min–max, like window=None
    minmax = standardise_dicom(ds, window=None)
    np.testing.assert_allclose(standardise_dicom(ds), minmax)
    assert minmax.min() == 0 and minmax.max() == 1
    as16 = standardise_dicom(ds, window=None, output="uint16")
    assert as16.dtype == np.uint16 and as16.max() == 65535
    with pytest.raises(MedilabError, match="index 1"):
        standardise_dicom(ds, window=1)
    with pytest.raises(MedilabError, match="output"):
        standardise_dicom(ds, output="int8")


def test_window_index_selects_second_window(dicom_file) -> None:
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.WindowCenter, ds.WindowWidth = [40, -600], [400, 1500]
    hu = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_allclose(standardise_dicom(ds, window=1), apply_window(hu, -600, 1500))
    np.testing.assert_allclose(standardise_dicom(ds), apply_window(hu, 40, 400))


def test_monochrome1_inverts_without_window(dicom_file, tmp_path: Path) -> None:
    source = dicom_file("CT_small.dcm")
    shutil.copy(source, tmp_path / "a.dcm")
    ds = pydicom.dcmread(tmp_path / "a.dcm")
    normal = standardise_dicom(ds, window=None)
    ds.PhotometricInterpretation = "MONOCHROME1"
    np.testing.assert_allclose(standardise_dicom(ds, window=None), 1.0 - normal)


def test_rgb_jpeg_is_scaled_not_windowed(dicom_file) -> None:
    image = read_dicom(dicom_file("SC_rgb_jpeg_dcmtk.dcm"), standardise=True)
    assert image.array.shape == (100, 100, 3) and image.array.dtype == np.float32
    assert image.array.min() >= 0.0 and image.array.max() <= 1.0


def test_file_without_meta_header_is_read(dicom_file, tmp_path: Path) -> None:
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_dataset

    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    expected = apply_modality_lut(ds.pixel_array, ds)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    with open(tmp_path / "IM0001", "wb") as handle:  # old ACR-NEMA style: no preamble, no meta
        fp = DicomFileLike(handle)
        fp.is_little_endian, fp.is_implicit_VR = True, True
        write_dataset(fp, ds)
    image = read_image(tmp_path / "IM0001")
    np.testing.assert_array_equal(image.array, expected)
    assert image.meta["transfer_syntax"] == "Implicit VR Little Endian"


def test_voi_lut_sequence_preferred_like_pydicom(dicom_file) -> None:
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    item = pydicom.Dataset()
    item.LUTDescriptor = [512, 0, 12]  # 512 entries mapping modality values 0..511
    item.LUTData = [int(v) for v in np.linspace(100, 4000, 512)]
    ds.VOILUTSequence = pydicom.Sequence([item])
    ds.WindowCenter, ds.WindowWidth = 40, 400  # present too, but the LUT wins (as in pydicom)
    hu = apply_modality_lut(ds.pixel_array, ds)
    reference = apply_voi_lut(hu, ds)
    reference = (reference - 100) / (4000 - 100)
    ours = standardise_dicom(ds)
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    assert ours.min() == 0 and ours.max() == 1


def test_ct_window_preset_on_non_ct_image_warns(dicom_file) -> None:
    import warnings

    from medilab.io.dicom import ct_window_warning

    mr = pydicom.dcmread(dicom_file("MR_small.dcm"))
    with pytest.warns(UserWarning, match=r"'lung' is a CT \(Hounsfield unit\) window but the "
                                         r"image is MR"):
        standardise_dicom(mr, window="lung")
    ct = pydicom.dcmread(dicom_file("CT_small.dcm"))
    assert ct_window_warning(ct, "lung") is None
    assert ct_window_warning(mr, "40,400") is None and ct_window_warning(mr, None) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        standardise_dicom(ct, window="Lung")
        standardise_dicom(mr, window="first")
