"""PHI-free metadata export, age / sex parsing and salted patient keys."""

from __future__ import annotations

import json

import pydicom
import pytest

from medilab.io.phi import dicom_metadata, parse_age, parse_sex, patient_key


@pytest.mark.parametrize(
    ("text", "years"),
    [("061Y", 61.0), ("006M", 0.5), ("003W", 21 / 365.25), ("010D", 10 / 365.25),
     ("45", 45.0), (" 070Y ", 70.0), ("", None), ("abcY", None), (None, None), ("12X", None)],
)
def test_parse_age(text, years) -> None:
    result = parse_age(text)
    assert result == (pytest.approx(years) if years is not None else None)


def test_parse_sex() -> None:
    assert [parse_sex(v) for v in ("M", "f", "O", "", None, "X")] == ["M", "F", "O", None, None,
                                                                      None]


def test_patient_key_is_salted_truncated_sha256() -> None:
    key = patient_key("PID-0001", "s3cret")
    assert len(key) == 16 and int(key, 16) >= 0
    assert key == patient_key("PID-0001", "s3cret")
    assert key != patient_key("PID-0001", "other salt")
    assert key != patient_key("PID-0002", "s3cret")


def test_metadata_has_no_identifiers(dicom_file) -> None:
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"), stop_before_pixels=True)
    ds.PatientName = "Doe^Johnathan"
    ds.PatientID = "MRN-778899"
    ds.PatientBirthDate = "19610304"
    ds.AccessionNumber = "ACC-4455"
    ds.InstitutionName = "Saint Nowhere Hospital"
    ds.PatientAge = "061Y"
    ds.PatientSex = "F"
    meta = dicom_metadata(ds, salt="pepper")
    text = json.dumps(meta)
    for secret in ("Doe", "Johnathan", "MRN-778899", "19610304", "ACC-4455", "Nowhere",
                   str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)):
        assert secret not in text
    assert meta["patient_key"] == patient_key("MRN-778899", "pepper")
    assert meta["age_years"] == 61.0 and meta["sex"] == "F"
    assert meta["modality"] == "CT" and meta["rows"] == 128
    assert meta["pixel_spacing_row"] == pytest.approx(0.661468)
    assert "patient_key" not in dicom_metadata(ds)  # no salt, no key
    assert all(type(v) in {int, float, str, type(None)} for v in meta.values())
