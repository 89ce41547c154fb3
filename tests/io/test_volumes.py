"""NIfTI and NRRD round trips: (D, H, W) order, spacing and values kept."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest

from medilab.errors import InputFileError, MedilabError
from medilab.io.reader import read_image
from medilab.io.volumes import read_nifti, read_nrrd, write_nifti, write_nrrd

VOLUME = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)  # (D, H, W)
SPACING = (3.0, 1.5, 0.5)


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz"])
def test_nifti_round_trip(tmp_path: Path, name: str) -> None:
    path = write_nifti(tmp_path / name, VOLUME, SPACING)
    on_disk = nib.load(path)
    assert on_disk.shape == (4, 3, 2)  # file order (x, y, z): columns fastest
    assert on_disk.header.get_zooms() == (0.5, 1.5, 3.0)
    image = read_image(path)
    np.testing.assert_array_equal(image.array, VOLUME)
    assert image.array.dtype == np.int16 and image.is_volume
    assert image.spacing == SPACING
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp files left


def test_nifti_scaled_data_is_float(tmp_path: Path) -> None:
    image = nib.Nifti1Image(VOLUME.T.copy(), np.eye(4))
    image.header.set_slope_inter(2.0, -1.0)
    nib.save(image, tmp_path / "s.nii")
    data = read_nifti(tmp_path / "s.nii")
    assert data.array.dtype == np.float32
    np.testing.assert_allclose(data.array, VOLUME * 2.0 - 1.0)


def test_nrrd_round_trip(tmp_path: Path) -> None:
    path = write_nrrd(tmp_path / "v.nrrd", VOLUME, SPACING)
    header = nrrd.read_header(str(path))
    assert list(header["sizes"]) == [4, 3, 2]
    image = read_image(path)
    np.testing.assert_array_equal(image.array, VOLUME)
    assert image.spacing == SPACING


def test_nrrd_space_directions_kept(tmp_path: Path) -> None:
    directions = np.diag([0.5, -1.5, 3.0])
    header = {"space": "left-posterior-superior", "space directions": directions,
              "space origin": np.array([1.0, 2.0, 3.0])}
    write_nrrd(tmp_path / "d.nrrd", VOLUME, header=header)
    image = read_nrrd(tmp_path / "d.nrrd")
    assert image.spacing == SPACING
    np.testing.assert_allclose(image.meta["space_directions"], directions)


def test_real_mri_nrrd(medilab_data: Path) -> None:
    path = medilab_data / "mri" / "brain1_image.nrrd"
    if not path.exists():
        pytest.skip("brain1_image.nrrd not present")
    image = read_image(path)
    assert image.array.shape == (25, 256, 256)  # slices first
    assert image.spacing == pytest.approx((6.5, 0.78125, 0.78125))


def test_bad_volume_files(tmp_path: Path) -> None:
    (tmp_path / "x.nii.gz").write_bytes(b"not gzip at all")
    with pytest.raises(InputFileError, match="not a readable NIfTI file"):
        read_image(tmp_path / "x.nii.gz")
    (tmp_path / "x.nrrd").write_text("NRRD0004\nbroken: yes\n")
    with pytest.raises(InputFileError, match="not a readable NRRD file"):
        read_image(tmp_path / "x.nrrd")
    with pytest.raises(MedilabError, match=r"\.nii"):
        write_nifti(tmp_path / "x.img", VOLUME)
