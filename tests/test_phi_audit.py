"""PHI audit end to end: DICOMs with known identifiers (in their headers, folder and file names)
go through ``dicom convert --pseudonymise-paths``, ``data verify``, an image_table built from
its manifest, train, evaluate, predict, explain, report, compare and the model card; no output
file name or content (CSV, JSON, YAML, HTML, PNG text chunks, checkpoints, logs, TensorBoard
events, the decoded-image cache) holds any identifier."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

PATIENTS = 6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def identifiers(patient: int) -> dict[str, str]:
    """Distinctive values (no chance matches in binary data) for one patient."""
    return {
        "PatientName": f"Zyxwar{patient}^Quolbert",
        "PatientID": f"PIDQ77{patient}899",
        "PatientBirthDate": f"1961020{patient}",
        "AccessionNumber": f"ACCX44{patient}566",
        "InstitutionName": "Bramblewick Infirmary",
        "ReferringPhysicianName": "Pengrove^Thaddeus",
        "StudyDate": f"2019031{patient}",
        "SeriesDate": f"2019041{patient}",
        "AcquisitionDate": f"2019051{patient}",
        "StudyInstanceUID": f"1.2.826.0.1.3680043.99.4455.{patient}1",
        "SeriesInstanceUID": f"1.2.826.0.1.3680043.99.4455.{patient}2",
    }


def write_dicom(path: Path, patient: int, image: int, bright: bool) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    sop = f"1.2.826.0.1.3680043.99.4455.{patient}3.{image}"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    for keyword, value in identifiers(patient).items():
        setattr(ds, keyword, value)
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, sop
    ds.Modality, ds.PatientSex, ds.PatientAge = "OT", "F", "058Y"
    rng = np.random.default_rng(patient * 10 + image)
    pixels = rng.integers(0, 300, (32, 32)).astype(np.uint16)
    if bright:
        pixels[10:22, 10:22] = 3000
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def phi_values() -> list[str]:
    """Every identifier as written, its name parts and dates in ISO form."""
    values: set[str] = set()
    for patient in range(PATIENTS):
        for value in identifiers(patient).values():
            values.add(value)
            values.update(part for part in value.split("^") if len(part) >= 6)
            if re.fullmatch(r"\d{8}", value):
                values.add(f"{value[:4]}-{value[4:6]}-{value[6:]}")
        values.add(f"1.2.826.0.1.3680043.99.4455.{patient}3")  # SOP instance UIDs
    return sorted(values)


def texts_of(path: Path) -> list[str]:
    """What a file holds as text: its bytes, PNG text chunks (also of PNGs embedded in HTML)
    and the non-tensor content of checkpoints."""
    raw = path.read_bytes()
    texts = [raw.decode("latin-1")]
    if path.suffix == ".png":
        texts += png_text(raw)
    if path.suffix == ".html":
        for encoded in re.findall(rb"data:image/png;base64,([A-Za-z0-9+/=]+)", raw):
            texts += png_text(base64.b64decode(encoded))
    if path.suffix == ".ckpt":
        texts.append(repr(strip_tensors(torch.load(path, map_location="cpu",
                                                   weights_only=True))))
    return texts


def png_text(data: bytes) -> list[str]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return [f"{k}={v}" for k, v in {**image.info, **getattr(image, "text", {})}.items()]


def strip_tensors(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): strip_tensors(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strip_tensors(v) for v in value]
    return "<tensor>" if isinstance(value, torch.Tensor) else value


def test_no_identifier_reaches_any_output(tmp_path, capsys):
    """Folders named by PatientID and files by the patient's name (as DICOM archives often are)
    → convert --pseudonymise-paths → data verify → train (TensorBoard on) → evaluate → predict
    → explain → report → compare: no identifier in any artefact, the decoded-image cache or
    anything printed."""
    from PIL import Image
    from typer.testing import CliRunner

    from medilab import api
    from medilab.cli import app
    from medilab.config import validate_config
    from medilab.data.cache import CACHE_DIR_ENV
    from medilab.reports.compare import compare_runs

    source, converted = tmp_path / "dicom", tmp_path / "converted"
    for patient in range(PATIENTS):
        ids = identifiers(patient)
        surname = ids["PatientName"].split("^")[0]
        for image in range(2):
            write_dicom(source / ids["PatientID"] / f"{surname}_{image}.dcm", patient, image,
                        bright=(patient + image) % 2 == 1)
    convert = CliRunner().invoke(app, ["dicom", "convert", str(source), str(converted),
                                       "--salt", "audit-salt", "--pseudonymise-paths"])
    assert convert.exit_code == 0, convert.output

    manifest = pd.read_csv(converted / "manifest.csv", dtype=str, keep_default_na=False)
    assert len(manifest) == 2 * PATIENTS and manifest["patient_key"].nunique() == PATIENTS
    assert (manifest["source"] == "").all()  # the source paths carry identifiers

    def label(png: str) -> str:  # the bright square, read back from the converted pixels
        pixels = np.asarray(Image.open(converted / png), dtype=float)
        return "finding" if pixels[10:22, 10:22].mean() > 2 * pixels.mean() else "none"

    table = pd.DataFrame({"image": manifest["output"], "patient_id": manifest["patient_key"],
                          "label": [label(p) for p in manifest["output"]]})
    assert table["label"].value_counts().to_dict() == {"finding": PATIENTS, "none": PATIENTS}
    table.to_csv(converted / "metadata.csv", index=False)
    config = validate_config({
        "experiment": "phi_audit", "task": "classification", "seed": 2,
        "data": {"source": "image_table", "root": str(converted), "batch_size": 4,
                 "val_fraction": 0.34},
        "model": {"name": "convnet", "kwargs": {"widths": [4], "convs": 1}},
        "trainer": {"max_epochs": 1, "progress_bar": False, "tensorboard": True},
        "evaluation": {"bootstrap_samples": 10},
    })
    verified = api.verify_data(config, out=tmp_path / "verify" / "problems.csv")
    assert not verified.fatal
    run = api.train(config, run_dir=tmp_path / "run")
    api.evaluate(run)
    table.drop(columns=["label"]).to_csv(converted / "new.csv", index=False)
    predictions = api.predict(run, converted / "new.csv", tmp_path / "predictions.csv")
    api.explain(run, converted / manifest["output"].iloc[0], tmp_path / "cams", "gradcam")
    api.write_report(run)
    compare_runs([run], tmp_path / "compare" / "compare.html")
    api.write_card(run, tmp_path / "card")
    printed = capsys.readouterr()

    folders = (converted, run, tmp_path / "compare", tmp_path / "cams", tmp_path / "verify",
               tmp_path / "card",
               Path(os.environ[CACHE_DIR_ENV]))
    outputs = [p for folder in folders for p in folder.rglob("*") if p.is_file()] + [predictions]
    assert {p.suffix for p in outputs} >= {".csv", ".json", ".yaml", ".html", ".png", ".ckpt",
                                           ".npy"}
    assert any("tfevents" in p.name for p in outputs)  # TensorBoard events are scanned too
    # the model card (evaluate and report write it; `medilab card --out` too) is scanned, and
    # so is its participant-flow PNG with the numbers in its text chunk
    assert {"model_card.md", "model_card.html", "card_flow.png"} <= {p.name for p in outputs}
    cards = [p for p in outputs if p.name.startswith("model_card")]
    assert len(cards) == 4  # in the run folder and under --out
    assert [p for p in cards for key in manifest["patient_key"] if key in p.read_text()] == []
    assert "salted hashes" in (run / "model_card.md").read_text()  # de-identification facts
    assert len(outputs) >= 50  # 56 when written
    hits = [(str(p), value) for p in outputs for text in [str(p), *texts_of(p)]
            for value in phi_values() if value in text]
    hits += [("printed output", v) for v in phi_values()
             if v in printed.out + printed.err + convert.output]
    assert hits == []


def test_the_audit_finds_identifiers_where_they_are(tmp_path):
    """The scan is live: a DICOM itself, a text file and a PNG text chunk are caught."""
    from PIL import Image, PngImagePlugin

    write_dicom(tmp_path / "a.dcm", 1, 0, True)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", identifiers(2)["PatientName"])
    Image.new("L", (4, 4)).save(tmp_path / "b.png", pnginfo=info)
    (tmp_path / "c.csv").write_text(f"id\n{identifiers(3)['AccessionNumber']}\n")
    found = {p.name for p in tmp_path.iterdir() for text in texts_of(p)
             if any(v in text for v in phi_values())}
    assert found == {"a.dcm", "b.png", "c.csv"}
