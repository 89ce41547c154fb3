"""Datasets: 2D with covariates, 2.5D stacking with edge replication, 3D, masks, boxes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from medilab.data.covariates import fit_covariates
from medilab.data.datasets import (
    ArrayDataset,
    DetectionDataset,
    ManifestDataset,
    SegmentationDataset,
    SliceDataset,
    VolumeDataset,
    detection_collate,
    stack_slices,
)
from medilab.data.sources import medmnist_manifest


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


def test_slice_dataset_over_npy_volumes(tmp_path):
    np.save(tmp_path / "v.npy", _volume(5))
    np.save(tmp_path / "m.npy", (_volume(5) > 2).astype(np.uint8))
    manifest = pd.DataFrame({"sample_id": ["v"], "image": [str(tmp_path / "v.npy")],
                             "mask": [str(tmp_path / "m.npy")], "label": [1]})
    ds = SliceDataset(manifest, k=3, mask_columns=["mask"])
    assert len(ds) == 5
    first, last = ds[0], ds[4]
    assert first["image"].shape == (3, 4, 4)
    assert first["image"][:, 0, 0].tolist() == [0, 0, 1]
    assert last["image"][:, 0, 0].tolist() == [3, 4, 4]
    assert first["mask"].sum() == 0 and last["mask"].sum() == 16
    assert last["label"].item() == 1 and last["slice"] == 4
    centre = SliceDataset(manifest, slices="center")
    assert len(centre) == 1 and centre[0]["image"][:, 0, 0].tolist() == [1, 2, 3]


def test_volume_dataset_from_medmnist_3d(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 6, 5, 4), dtype=np.uint8)
    np.savez(tmp_path / "v3d.npz", train_images=images, train_labels=np.array([[0], [1], [1]]))
    ds = VolumeDataset(medmnist_manifest(tmp_path / "v3d.npz"))
    sample = ds[1]
    assert sample["image"].shape == (1, 6, 5, 4) and sample["image"].dtype == torch.float32
    assert torch.allclose(sample["image"][0], torch.from_numpy(images[1] / 255.0).float())
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 1, 6, 5, 4) and batch["label"].tolist() == [0, 1, 1]


def test_2d_dataset_with_covariates(tmp_path):
    paths = []
    for i in range(4):
        rgba = np.zeros((5, 5, 4 if i == 3 else 3), np.uint8)
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rgba).save(paths[-1])
    manifest = pd.DataFrame({"image": [str(p) for p in paths], "label": [0, 1, 0, 1],
                             "age": [20.0, 40.0, 90.0, np.nan], "sex": ["F", "M", "M", "F"],
                             "split": ["train", "train", "val", "val"]})
    manifest["sample_id"] = [f"s{i}" for i in range(4)]
    encoder = fit_covariates(manifest, ["age"], ["sex"])
    ds = ManifestDataset(manifest, covariates=encoder)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 5, 5)  # the RGBA image lost its alpha channel
    assert encoder.feature_names == ["age", "sex=F", "sex=M", "age_missing", "sex_missing"]
    cov = batch["covariates"]
    assert cov[:, 0].tolist() == pytest.approx([-1.0, 1.0, 6.0, 0.0])  # train mean 30, sd 10
    assert cov[:, 3].tolist() == [0, 0, 0, 1]
    assert ManifestDataset(manifest, channels=1)[0]["image"].shape == (1, 5, 5)


def test_segmentation_dataset(tmp_path):
    Image.fromarray(np.full((4, 6), 128, np.uint8)).save(tmp_path / "i.png")
    mask = np.zeros((4, 6), np.uint8)
    mask[1:3, 2:5] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    manifest = pd.DataFrame({"image": [str(tmp_path / "i.png")], "mask": [str(tmp_path / "m.png")]})
    sample = SegmentationDataset(manifest)[0]
    assert sample["image"].shape == (1, 4, 6)
    assert sample["mask"].dtype == torch.int64 and sample["mask"].sum() == 6
    assert "label" not in sample


def test_detection_dataset(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    manifest = pd.DataFrame({"image": [str(tmp_path / "a.png")] * 2,
                             "boxes": [[[1, 1, 4, 5], [2, 2, 6, 6]], []],
                             "box_labels": [["obsolete", "active"], []]})
    ds = DetectionDataset(manifest)
    image, target = ds[0]
    assert ds.classes == ["active", "obsolete"]
    assert image.shape == (1, 8, 8)
    assert target["boxes"].shape == (2, 4) and target["labels"].tolist() == [2, 1]
    assert ds[1][1]["boxes"].shape == (0, 4)
    images, targets = detection_collate([ds[0], ds[1]])
    assert len(images) == 2 and len(targets) == 2


def test_array_dataset():
    ds = ArrayDataset(np.zeros((2, 4, 4, 4), np.uint8), np.array([0, 1]), spatial_dims=3)
    assert ds[1]["image"].shape == (1, 4, 4, 4) and ds[1]["label"].item() == 1


def test_real_adrenal_25d(medilab_data):
    manifest = medmnist_manifest(medilab_data / "medmnist" / "adrenalmnist3d.npz").head(2)
    ds = SliceDataset(manifest, k=3)
    assert len(ds) == 56 and ds[0]["image"].shape == (3, 28, 28)


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


def test_volume_sources_dicom_series_and_nifti(tmp_path):
    import nibabel as nib

    series = _dicom_series(tmp_path / "series")
    # NIfTI stores (x, y, z); medilab.io returns (z, y, x): slice i holds i
    nib.save(nib.Nifti1Image(np.moveaxis(_volume(3, 6), 0, -1), np.eye(4)), tmp_path / "v.nii.gz")
    manifest = pd.DataFrame({"image": [str(series), str(tmp_path / "v.nii.gz")],
                             "sample_id": ["ct", "nii"], "label": [0, 1]})
    ct = VolumeDataset(manifest.iloc[:1])[0]["image"]
    assert ct.shape == (1, 4, 128, 128)
    # modality LUT applied (intercept -1024) and slices ordered by position, not file name
    assert ct[0, :, 0, 0].tolist() == [-1024.0, -1014.0, -1004.0, -994.0]
    slices = SliceDataset(manifest.iloc[:1], k=3)
    assert slices[3]["image"][:, 0, 0].tolist() == [-1004.0, -994.0, -994.0]
    nii = VolumeDataset(manifest.iloc[1:])[0]["image"]
    assert nii.shape == (1, 3, 6, 6) and nii[0, :, 2, 1].tolist() == [0.0, 1.0, 2.0]


def test_make_datasets_by_split(tmp_path):
    from medilab.data.datasets import make_datasets
    from medilab.data.splits import make_splits

    paths = []
    for i in range(20):
        paths.append(str(tmp_path / f"{i}.npy"))
        np.save(paths[-1], np.full((4, 4), i, np.float32))
    manifest = pd.DataFrame({"sample_id": [f"s{i}" for i in range(20)], "image": paths,
                             "patient_id": [f"p{i // 2}" for i in range(20)],
                             "label": [i % 2 for i in range(20)],
                             "age": np.arange(20, dtype=float), "sex": ["F", "M"] * 10})
    splits = make_splits(manifest, val=0.3, seed=0)
    datasets, encoder = make_datasets(manifest, splits, numeric=["age"], categorical=["sex"],
                                      transform={"train": lambda x: x + 100})
    assert set(datasets) == {"train", "val"}
    assert sum(len(d) for d in datasets.values()) == 20
    train_ages = manifest.set_index("sample_id").loc[
        splits.loc[splits["split"] == "train", "sample_id"], "age"]
    assert encoder.means["age"] == pytest.approx(train_ages.mean())
    assert datasets["train"][0]["image"].min() >= 100 and datasets["val"][0]["image"].max() < 100
    assert datasets["val"][0]["covariates"].shape == (5,)
