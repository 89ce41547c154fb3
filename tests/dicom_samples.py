"""Small synthetic DICOM files for tests (importable from any test folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_dicom(path: Path, seed: int, shape: tuple[int, int] = (32, 32)) -> Path:
    """A 12-bit MONOCHROME2 secondary-capture image with seeded random pixels and a bright
    square; patient ``P<seed % 5>``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    sop = f"1.2.826.0.1.3680043.99.7711.{seed + 1}"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, sop
    ds.PatientID, ds.Modality = f"P{seed % 5}", "OT"
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 1000, shape).astype(np.uint16)
    pixels[shape[0] // 4: shape[0] // 2, shape[1] // 4: shape[1] // 2] = 4000
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_dicom_folder(folder: Path, n: int, shape: tuple[int, int] = (32, 32)) -> list[Path]:
    """``n`` files ``folder/img000.dcm`` … (sorted as numbered)."""
    return [write_dicom(folder / f"img{i:03d}.dcm", i, shape) for i in range(n)]
