"""`data info`: samples per split and label, shapes, value ranges, patients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medilab.data.info import dataset_info
from medilab.errors import InputFileError


def test_npz_info(tmp_path):
    np.savez(tmp_path / "t.npz", train_images=np.full((3, 4, 4), 7, np.uint8),
             train_labels=np.array([[0], [1], [1]]), val_images=np.zeros((1, 4, 4), np.uint8),
             val_labels=np.array([[0]]))
    info = dataset_info(tmp_path / "t.npz")
    assert info.splits == {"train": 3, "val": 1}
    assert info.labels == {"train": {"0": 1, "1": 2}, "val": {"0": 1}}
    assert info.shapes == {"4x4": 4} and info.value_range == (0.0, 7.0)


def test_folder_info(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(4):
        Image.fromarray(np.full((5, 6), 10 * i, np.uint8)).save(tmp_path / "images" / f"{i}.png")
    pd.DataFrame({"image": [f"{i}.png" for i in range(4)], "patient_id": [1, 1, 2, 3],
                  "label": [0, 1, 1, 1], "split": ["train", "val", "train", "val"]}
                 ).to_csv(tmp_path / "metadata.csv", index=False)
    info = dataset_info(tmp_path)
    assert info.n_samples == 4 and info.splits == {"train": 2, "val": 2}
    assert info.labels == {"train": {"0": 1, "1": 1}, "val": {"1": 2}}
    assert info.n_patients == 3 and info.leaking_patients == 1
    assert info.shapes == {"5x6": 4} and info.value_range == (0.0, 30.0)
    assert ("patients in >1 split", "1") in info.rows()


def test_dicom_folder_info(tmp_path):
    import shutil

    from pydicom.data import get_testdata_file

    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "a.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "b.dcm")
    info = dataset_info(tmp_path)
    assert info.kind == "DICOM folder" and info.n_samples == 2
    assert info.labels == {"modality": {"CT": 1, "MR": 1}}
    assert info.shapes == {"128x128": 1, "64x64": 1}


def test_real_nih1000_info(medilab_data):
    info = dataset_info(medilab_data / "nih1000", max_images=20)
    assert info.n_samples == 748 and info.n_patients == 197
    assert info.splits == {"test": 147, "train": 466, "valid": 135}
    assert info.images_read == 20


def _pixel_csv(path, rows, labelled=True):
    head = (["label"] if labelled else []) + [f"pixel{i}" for i in range(len(rows[0]) - labelled)]
    pd.DataFrame(rows, columns=head).to_csv(path, index=False)
    return path


def test_pixel_csv_info_counts_images_and_labels(tmp_path):
    rows = [[3, 0, 10, 20, 30], [3, 1, 2, 3, 4], [7, 5, 6, 7, 255]]
    info = dataset_info(_pixel_csv(tmp_path / "train.csv", rows))
    assert info.kind == "pixel CSV (label,pixel0..)" and info.n_samples == 3
    assert info.labels == {"all": {"3": 2, "7": 1}}
    assert info.shapes == {"2x2": 3} and info.value_range == (0.0, 255.0)
    assert info.details["pixel columns"] == "pixel0 … pixel3 (2x2 images)"
    test = dataset_info(_pixel_csv(tmp_path / "test.csv", [r[1:] for r in rows], False))
    assert test.kind == "pixel CSV (pixels only, no labels)" and test.labels == {}


def test_784_pixel_columns_never_listed(tmp_path):
    rows = [[i % 10, *([i] * 784)] for i in range(4)]
    info = dataset_info(_pixel_csv(tmp_path / "train.csv", rows))
    assert info.shapes == {"28x28": 4}
    assert all(len(value) < 200 for _, value in info.rows())
    wide = tmp_path / "wide.csv"
    pd.DataFrame({f"col{i}": [1] for i in range(785)}).to_csv(wide, index=False)
    with pytest.raises(InputFileError) as error:
        dataset_info(wide)
    assert str(error.value).startswith(
        f"{wide}: no 'image' column (has col0, col1, col2, col3, col4, col5, col6, col7 "
        "… and 777 more); "
    )


def test_text_file_named_npz(tmp_path):
    fake = tmp_path / "breastmnist.npz"
    fake.write_text("image,label\n")
    with pytest.raises(InputFileError) as error:
        dataset_info(fake)
    assert str(error.value) == f"{fake}: not a valid npz file"


def test_volume_folder_info(tmp_path):
    from medilab.io.volumes import write_nifti, write_nrrd

    image = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    label = (image > 20).astype(np.uint8)
    write_nrrd(tmp_path / "case1_image.nrrd", image, spacing=(5.0, 1.0, 1.0))
    write_nrrd(tmp_path / "case1_label.nrrd", label, spacing=(5.0, 1.0, 1.0))
    write_nifti(tmp_path / "case2.nii.gz", image[:1], spacing=(2.0, 0.5, 0.5))
    info = dataset_info(tmp_path)
    assert info.kind == "volume folder (NRRD / NIfTI)" and info.n_samples == 2
    assert info.details["label maps"] == "1"
    assert info.details["volumes with a label map"] == "1 of 2"
    assert info.labels == {"label map voxels": {"0": 21, "1": 3}}
    assert info.shapes == {"2x3x4": 1, "1x3x4": 1} and info.value_range == (0.0, 23.0)
    assert info.details["spacing (mm)"] == "5 x 1 x 1 ×1, 2 x 0.5 x 0.5 ×1"


def test_single_dicom_file_info(tmp_path):
    from pydicom.data import get_testdata_file

    info = dataset_info(get_testdata_file("CT_small.dcm"))
    assert info.kind == "DICOM file" and info.n_samples == 1
    assert info.details["modality"] == "CT" and info.shapes == {"128x128": 1}
    assert info.value_range is not None and info.value_range[0] < 0  # Hounsfield units


def test_box_table_folder_info(tmp_path):
    (tmp_path / "images").mkdir()
    names = ["a.png", "b.png", "c.png"]
    for name in names:
        Image.fromarray(np.full((8, 8), 9, np.uint8)).save(tmp_path / "images" / name)
    pd.DataFrame({"image": names, "tb": [1, 1, 0]}).to_csv(tmp_path / "images.csv", index=False)
    pd.DataFrame({"image": ["a.png", "a.png", "b.png"], "label": ["Active", "Obsolete", "Active"],
                  "x1": [1, 2, 3], "y1": [1, 1, 1], "x2": [4, 5, 6], "y2": [4, 4, 4]}
                 ).to_csv(tmp_path / "boxes.csv", index=False)
    info = dataset_info(tmp_path)
    assert info.kind == "box table (images.csv + boxes.csv)" and info.n_samples == 3
    assert info.details["boxes"] == "3" and info.details["images without boxes"] == "1"
    assert info.details["images with boxes"] == "2"
    assert info.labels == {"box classes": {"Active": 2, "Obsolete": 1}}
    assert info.shapes == {"8x8": 3}


def test_dicom_folder_counts_skipped_files(tmp_path):
    import shutil

    from pydicom.data import get_testdata_file

    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "a.dcm")
    (tmp_path / "notes.dcm").write_text("a text file with a DICOM suffix")
    (tmp_path / "empty_header.dcm").write_bytes(b"\0" * 128 + b"DICM")
    (tmp_path / "README").write_text("notes")
    info = dataset_info(tmp_path)
    assert info.kind == "DICOM folder" and info.n_samples == 1
    assert info.details["unreadable DICOM files"] == (
        f"1 (skipped; first: {tmp_path / 'notes.dcm'}: not a readable DICOM file "
        "(no DICM header, no image rows))"
    )
    assert info.details["DICOM files without image rows"] == "1 (skipped)"
    assert info.details["other files ignored"] == "1"
    (tmp_path / "a.dcm").unlink()
    with pytest.raises(InputFileError, match=r"\(1 unreadable DICOM file\(s\), 1 without image "
                                             r"rows, 1 other file\(s\) ignored\)"):
        dataset_info(tmp_path)


def test_real_mri_tbx11k_dicom_and_digits(medilab_data):
    mri = dataset_info(medilab_data / "mri")
    assert mri.n_samples == 3 and mri.details["label maps"] == "3"
    assert set(mri.labels["label map voxels"]) == {"0", "1"}
    tbx = dataset_info(medilab_data / "tbx11k", max_images=5)
    assert tbx.n_samples == 752 and tbx.details["boxes"] == "902"
    assert tbx.details["images without boxes"] == "153"
    assert set(tbx.labels["box classes"]) == {"ActiveTuberculosis",
                                              "ObsoletePulmonaryTuberculosis"}
    cr = dataset_info(medilab_data / "dicom" / "siim_cr_sample.dcm")
    assert cr.details["modality"] == "CR" and cr.shapes == {"1024x1024": 1}
    digits = dataset_info(medilab_data / "digits" / "train.csv")
    assert digits.n_samples == 5000 and digits.labels["all"] == {str(d): 500 for d in range(10)}
