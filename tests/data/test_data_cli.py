"""`medilab split`, `medilab split check` and `medilab data info` command lines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medilab.cli import main


def _run(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code or 0, capsys.readouterr()


@pytest.fixture
def manifest(tmp_path):
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(60), 2)
    frame = pd.DataFrame({"sample_id": [f"s{i}" for i in range(120)], "patient_id": patients,
                          "label": (rng.random(60)[patients] < 0.4).astype(int)})
    frame.to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path / "manifest.csv"


def test_split_then_check(manifest, tmp_path, capsys):
    out = tmp_path / "splits.csv"
    code, _ = _run([ "split", str(manifest), "--group", "patient_id", "--stratify", "label",
                    "--val", "0.2", "--test", "0.1", "--seed", "3", "--out", str(out)], capsys)
    assert code == 0
    splits = pd.read_csv(out)
    assert list(splits.columns) == ["sample_id", "split", "patient_id"]
    assert set(splits["split"]) == {"train", "val", "test"}
    code, captured = _run(["split", "check", str(out), "--split-column", "split",
                           "--group", "patient_id"], capsys)
    assert code == 0 and "0 patient_id value(s)" in captured.out
    splits.loc[0, "split"] = "test" if splits.loc[0, "split"] != "test" else "train"
    splits.to_csv(out, index=False)
    code, captured = _run(["split", "check", str(out)], capsys)
    assert code == 1 and "1 patient_id value(s)" in captured.out


def test_split_folds(manifest, tmp_path, capsys):
    code, _ = _run(["split", str(manifest), "--folds", "4", "--out", str(tmp_path / "f.csv")],
                   capsys)
    assert code == 0
    assert sorted(pd.read_csv(tmp_path / "f.csv")["split"].unique()) == [
        "fold0", "fold1", "fold2", "fold3"]


def test_split_bad_column_is_one_line_error(manifest, tmp_path, capsys):
    code, captured = _run(["split", str(manifest), "--group", "subject", "--out",
                           str(tmp_path / "x.csv")], capsys)
    assert code == 2
    assert captured.err.strip() == (f"error: {manifest}: group column 'subject' not found; "
                                    "has sample_id, patient_id, label")
    assert not (tmp_path / "x.csv").exists()


def test_split_fractions_over_one_are_named(manifest, tmp_path, capsys):
    code, captured = _run(["split", str(manifest), "--val", "0.2", "--test", "0.9", "--out",
                           str(tmp_path / "x.csv")], capsys)
    assert code == 2
    assert captured.err.strip() == "error: val + test must be < 1 (got 0.2 + 0.9)"
    assert not (tmp_path / "x.csv").exists()


def test_nih1000_check_exit_code(medilab_data, capsys):
    code, captured = _run(["split", "check", str(medilab_data / "nih1000" / "metadata.csv"),
                           "--split-column", "repo_split", "--group", "patient_id"], capsys)
    assert code == 1
    assert "24 patient_id value(s) in more than one 'repo_split' split" in captured.out


def test_data_info(tmp_path, capsys):
    np.savez(tmp_path / "t.npz", train_images=np.zeros((2, 3, 3), np.uint8),
             train_labels=np.array([[0], [1]]))
    code, captured = _run(["data", "info", str(tmp_path / "t.npz")], capsys)
    assert code == 0 and "medmnist npz" in captured.out and "3x3" in captured.out


def test_data_info_pixel_csv_and_wide_csv_stay_short(tmp_path, capsys):
    header = ["label", *[f"pixel{i}" for i in range(784)]]
    rows = [[i % 3, *([i * 10] * 784)] for i in range(5)]
    pd.DataFrame(rows, columns=header).to_csv(tmp_path / "train.csv", index=False)
    code, captured = _run(["data", "info", str(tmp_path / "train.csv")], capsys)
    assert code == 0 and "pixel CSV" in captured.out and "28x28" in captured.out
    assert "pixel500" not in captured.out and "missing column" not in captured.err
    pd.DataFrame([r[1:] for r in rows], columns=[f"c{i}" for i in range(784)]).to_csv(
        tmp_path / "wide.csv", index=False)
    code, captured = _run(["data", "info", str(tmp_path / "wide.csv")], capsys)
    assert code == 2 and "c0, c1, c2, c3, c4, c5, c6, c7 … and 776 more" in captured.err
    assert "c500" not in captured.err and captured.err.count("\n") == 1
