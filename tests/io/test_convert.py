"""``convert_tree`` and ``medilab dicom convert`` on a small real-DICOM folder tree."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medilab.cli import main
from medilab.errors import MedilabError
from medilab.io.convert import ConvertOptions, convert_tree
from medilab.io.phi import patient_key
from medilab.io.reader import read_image


@pytest.fixture
def tree(tmp_path: Path, dicom_file) -> Path:
    """src/a/ct.dcm, src/b/IM0001 (MR, no suffix), src/a/broken.dcm (truncated), 2 non-DICOM."""
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID = "Doe^Johnathan", "MRN-778899"
    ds.save_as(src / "a" / "ct.dcm")
    shutil.copy(dicom_file("MR_small.dcm"), src / "b" / "IM0001")
    data = (src / "a" / "ct.dcm").read_bytes()
    (src / "a" / "broken.dcm").write_bytes(data[: len(data) // 2])
    (src / "notes.txt").write_text("not an image")
    (src / "b" / "README").write_text("no suffix, no DICM magic: ignored")
    return src


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_convert_tree_converts_good_lists_bad_and_skips_on_rerun(tree: Path) -> None:
    dst = tree.parent / "png"
    options = ConvertOptions(size=64, salt="pepper", color_balance=1.0)
    summary = convert_tree(tree, dst, options, progress=False)
    assert (summary.total, summary.converted, summary.skipped, summary.failed) == (3, 2, 0, 1)
    assert not summary.ok and summary.ignored == 2
    errors = _csv(dst / "errors.csv")
    assert [e["source"] for e in errors] == ["a/broken.dcm"]
    assert errors[0]["reason"].startswith("not a readable DICOM file (")
    manifest = _csv(dst / "manifest.csv")
    assert [r["output"] for r in manifest] == ["a/ct.png", "b/IM0001.png"]
    ct = manifest[0]
    assert ct["patient_key"] == patient_key("MRN-778899", "pepper")
    assert ct["modality"] == "CT" and float(ct["scale_x"]) == 0.5
    text = (dst / "manifest.csv").read_text()
    assert "Doe" not in text and "MRN-778899" not in text
    png = read_image(dst / "a" / "ct.png").array
    assert png.shape == (64, 64) and png.dtype == np.uint8
    assert png.min() == 0 and png.max() == 255  # color balance stretched to the full range
    stamp = (dst / "a" / "ct.png").stat().st_mtime_ns

    again = convert_tree(tree, dst, options, progress=False)
    assert (again.converted, again.skipped, again.failed) == (0, 2, 1)
    assert (dst / "a" / "ct.png").stat().st_mtime_ns == stamp
    assert _csv(dst / "manifest.csv") == manifest  # skipped files stay in the manifest
    assert not [p for p in dst.rglob(".*")]  # no temporary files left

    redo = ConvertOptions(size=32, salt="pepper", overwrite=True)
    assert convert_tree(tree, dst, redo, progress=False).converted == 2
    assert read_image(dst / "a" / "ct.png").array.shape == (32, 32)


def test_convert_window_bits_workers_and_multiframe(tmp_path: Path, tree: Path, dicom_file):
    shutil.copy(dicom_file("emri_small.dcm"), tree / "b" / "cine.dcm")
    dst = tmp_path / "out16"
    options = ConvertOptions(window="-600,1500", bits=16, workers=2, log=True)
    summary = convert_tree(tree, dst, options, progress=False)
    assert (summary.converted, summary.failed) == (3, 1)
    frames = sorted(p.name for p in (dst / "b").glob("cine_f*.png"))
    assert len(frames) == 10 and frames[0] == "cine_f0000.png"
    assert read_image(dst / "a" / "ct.png").array.dtype == np.uint16
    rows = _csv(dst / "manifest.csv")
    assert len(rows) == 12 and rows[0]["patient_key"]  # random salt when none given
    assert summary.salt_generated


def test_identifiers_in_paths_flagged_and_pseudonymised(tmp_path: Path, dicom_file) -> None:
    src = tmp_path / "archive"
    (src / "MRN-778899" / "study").mkdir(parents=True)
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID = "Doe^Johnathan", "MRN-778899"
    ds.save_as(src / "MRN-778899" / "study" / "ct.dcm")
    mirrored = convert_tree(src, tmp_path / "m", ConvertOptions(salt="s"), progress=False)
    assert mirrored.identifiers_in_paths == 1
    options = ConvertOptions(salt="s", pseudonymise_paths=True)
    hidden = convert_tree(src, tmp_path / "p", options, progress=False)
    assert (hidden.converted, hidden.identifiers_in_paths) == (1, 0)
    name = patient_key("MRN-778899/study/ct.dcm", "s") + ".png"
    assert (tmp_path / "p" / name).is_file()
    text = (tmp_path / "p" / "manifest.csv").read_text()
    assert "MRN" not in text and "Doe" not in text and name in text
    assert convert_tree(src, tmp_path / "p", options, progress=False).skipped == 1


def test_convert_bad_options_and_missing_source(tmp_path: Path) -> None:
    with pytest.raises(MedilabError, match="bits"):
        convert_tree(tmp_path, tmp_path / "o", ConvertOptions(bits=12))
    with pytest.raises(MedilabError, match="window"):
        convert_tree(tmp_path, tmp_path / "o", ConvertOptions(window="nope"))
    with pytest.raises(MedilabError, match="existing folder"):
        convert_tree(tmp_path / "absent", tmp_path / "o")


def test_cli_exit_codes(tree: Path, capsys) -> None:
    dst = tree.parent / "cli_out"
    with pytest.raises(SystemExit) as failed:
        main(["dicom", "convert", str(tree), str(dst), "--window", "lung", "--salt", "s"])
    assert failed.value.code == 1
    assert "2 converted" in capsys.readouterr().out
    (tree / "a" / "broken.dcm").unlink()
    with pytest.raises(SystemExit) as fine:
        main(["dicom", "convert", str(tree), str(dst), "--salt", "s"])
    assert fine.value.code == 0
    assert "2 skipped" in capsys.readouterr().out
    assert _csv(dst / "errors.csv") == []
    with pytest.raises(SystemExit) as bad:
        main(["dicom", "convert", str(tree), str(dst), "--bits", "12"])
    assert bad.value.code == 2


def test_empty_source_is_an_error_and_writes_nothing(tmp_path: Path, capsys) -> None:
    src = tmp_path / "empty"
    src.mkdir()
    (src / "notes.txt").write_text("no images here")
    dst = tmp_path / "out"
    with pytest.raises(MedilabError) as info:
        convert_tree(src, dst, progress=False)
    assert str(info.value).startswith(f"no DICOM files under {src} (1 other file(s) ignored;")
    assert "\n" not in str(info.value)
    assert not dst.exists()
    with pytest.raises(SystemExit) as cli:
        main(["dicom", "convert", str(src), str(dst)])
    assert cli.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: no DICOM files under {src}")
    assert not dst.exists()


def test_patient_keys_stable_across_reruns_without_salt(tree: Path) -> None:
    dst = tree.parent / "png"
    first = convert_tree(tree, dst, progress=False)
    salt_file = dst / ".medilab_salt"
    assert first.salt_generated and first.salt_file == salt_file
    assert salt_file.stat().st_mode & 0o777 == 0o600
    salt = salt_file.read_text().strip()
    keys = [r["patient_key"] for r in _csv(dst / "manifest.csv")]
    assert keys[0] == patient_key("MRN-778899", salt)
    assert ".medilab_salt" not in (dst / "manifest.csv").read_text()
    again = convert_tree(tree, dst, ConvertOptions(overwrite=True), progress=False)
    assert not again.salt_generated and again.converted == 2
    assert [r["patient_key"] for r in _csv(dst / "manifest.csv")] == keys
    explicit = convert_tree(tree, dst, ConvertOptions(salt="pepper"), progress=False)
    assert explicit.salt_file is None
    assert _csv(dst / "manifest.csv")[0]["patient_key"] == patient_key("MRN-778899", "pepper")
    assert salt_file.read_text().strip() == salt  # an explicit salt is not stored
    other = convert_tree(tree, tree.parent / "elsewhere", progress=False)
    assert _csv(other.manifest)[0]["patient_key"] != keys[0]  # each folder has its own salt
    salt_file.write_text("")
    with pytest.raises(MedilabError, match="empty salt file"):
        convert_tree(tree, dst, progress=False)


def test_ct_window_preset_on_non_ct_warns(tree: Path, tmp_path: Path) -> None:
    (tree / "a" / "broken.dcm").unlink()
    cr = pydicom.dcmread(tree / "b" / "IM0001")
    cr.Modality = "CR"
    cr.save_as(tree / "b" / "chest.dcm")
    with pytest.warns(UserWarning) as caught:
        summary = convert_tree(tree, tmp_path / "lung", ConvertOptions(window="lung", salt="s"),
                               progress=False)
    assert summary.warnings == [
        "window preset 'lung' is a CT (Hounsfield unit) window but was applied to 2 non-CT "
        "file(s) (CR, MR); their PNGs are likely nearly white or black. Omit --window to use "
        "each file's own VOI window"
    ]
    assert [str(w.message) for w in caught] == summary.warnings
    ct_only = tmp_path / "ct_only"
    ct_only.mkdir()
    shutil.copy(tree / "a" / "ct.dcm", ct_only / "ct.dcm")
    assert convert_tree(ct_only, tmp_path / "ct", ConvertOptions(window="lung", salt="s"),
                        progress=False).warnings == []
    explicit = ConvertOptions(window="-600,1500", salt="s", overwrite=True)
    assert convert_tree(tree, tmp_path / "lung", explicit, progress=False).warnings == []
