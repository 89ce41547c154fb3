"""`data info`: samples per split and label, shapes, value ranges, patients."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from medilab.data.info import dataset_info


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
