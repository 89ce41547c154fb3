"""End-to-end through the command line: train → evaluate → predict, errors, resume, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from cli_samples import run_cli
from medilab.cli import main


def test_train_predict_end_to_end(tmp_path, digits_config, capsys, make_digits_csv):
    run_dir = tmp_path / "run"
    assert run_cli("train", digits_config, "--run-dir", run_dir) == 0
    for name in (
        "config.yaml",
        "splits.csv",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "metrics.csv",
        "metrics.json",
        "predictions_val.csv",
        "report.html",
    ):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "plots").is_dir()

    splits = pd.read_csv(run_dir / "splits.csv")
    assert splits["split"].value_counts().to_dict() == {"train": 160, "val": 40}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    accuracy = metrics["splits"]["val"]["accuracy"]
    assert accuracy["low"] <= accuracy["value"] <= accuracy["high"]
    assert metrics["n"]["val"] == 40
    curves = pd.read_csv(run_dir / "metrics.csv")
    assert {"train/loss", "val/loss", "val/accuracy", "val/f1_macro"} <= set(curves.columns)
    predictions = pd.read_csv(run_dir / "predictions_val.csv")
    assert len(predictions) == 40
    assert predictions[[f"prob_{k}" for k in range(10)]].sum(axis=1).round(3).eq(1).all()

    test_csv = make_digits_csv(tmp_path / "test.csv", n=25, labelled=False, seed=5)
    out = tmp_path / "submission.csv"
    assert run_cli("predict", run_dir, test_csv, "--out", out) == 0
    submission = pd.read_csv(out)
    assert list(submission.columns) == ["ImageId", "Label"]
    assert submission["ImageId"].tolist() == list(range(1, 26))
    assert submission["Label"].between(0, 9).all()
    assert "wrote" in capsys.readouterr().out


def test_training_learns(tmp_path, digits_config):
    run_dir = tmp_path / "run"
    assert run_cli("train", digits_config, "--run-dir", run_dir, "-o", "trainer.max_epochs=6") == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["splits"]["val"]["accuracy"]["value"] > 0.6  # chance is 0.1


def test_bad_train_csv_one_line_error_and_no_run_folder(
    tmp_path, digits_config, capsys, make_digits_csv
):
    bad = tmp_path / "nolabel.csv"
    pd.read_csv(make_digits_csv(tmp_path / "x.csv")).drop(columns="label").to_csv(bad, index=False)
    run_dir = tmp_path / "run"
    code = run_cli("train", digits_config, "-o", f"data.train_csv={bad}", "--run-dir", run_dir)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "Traceback" not in err
    assert str(bad) in err and "label" in err
    assert not run_dir.exists()


def test_unknown_config_key_exits_2(tmp_path, digits_config, capsys):
    code = run_cli("train", digits_config, "-o", "trainer.epochs=3", "--run-dir", tmp_path / "r")
    assert code == 2
    assert "unknown key 'trainer.epochs'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_debug_flag_shows_traceback(tmp_path, digits_config):
    from medilab.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "train", str(digits_config), "-o", "trainer.epochs=3"])


def test_predict_rejects_labelled_test_csv_and_writes_nothing(
    tmp_path, digits_config, capsys, make_digits_csv
):
    run_dir = tmp_path / "run"
    assert run_cli("train", digits_config, "--run-dir", run_dir, "--no-evaluate") == 0
    labelled = make_digits_csv(tmp_path / "test.csv", n=5, labelled=True)
    out = tmp_path / "submission.csv"
    assert run_cli("predict", run_dir, labelled, "--out", out) == 2
    assert "has a 'label' column" in capsys.readouterr().err
    assert not out.exists()
    assert not list(tmp_path.glob(".submission*"))


def test_predict_rejects_other_image_size(tmp_path, digits_config, capsys):
    run_dir = tmp_path / "run"
    assert run_cli("train", digits_config, "--run-dir", run_dir, "--no-evaluate") == 0
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame([[0] * 16], columns=[f"pixel{i}" for i in range(16)]).to_csv(wrong, index=False)
    assert run_cli("predict", run_dir, wrong, "--out", tmp_path / "s.csv") == 2
    assert "4x4 pixels, the model was trained on 8x8" in capsys.readouterr().err


def test_existing_run_folder_is_not_overwritten(tmp_path, digits_config, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "keep.txt").write_text("x")
    assert run_cli("train", digits_config, "--run-dir", run_dir) == 2
    assert "not empty" in capsys.readouterr().err
    assert (run_dir / "keep.txt").read_text() == "x"


def test_resume_continues_from_last_checkpoint(tmp_path, digits_config):
    run_dir = tmp_path / "run"
    overrides = ["-o", "trainer.max_epochs=1", "-o", "trainer.early_stopping.enabled=false"]
    assert run_cli("train", digits_config, "--run-dir", run_dir, *overrides, "--no-evaluate") == 0
    first = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)
    assert first["epoch"] == 0
    splits_before = (run_dir / "splits.csv").read_text()

    assert run_cli("train", "--run-dir", run_dir, "--resume", "-o", "trainer.max_epochs=3") == 0
    last = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)
    assert last["epoch"] == 2
    assert last["global_step"] == 3 * first["global_step"]
    assert (run_dir / "splits.csv").read_text() == splits_before
    epochs = pd.read_csv(run_dir / "metrics.csv")["epoch"].dropna().astype(int)
    assert sorted(set(epochs)) == [0, 1, 2]
    assert (run_dir / "metrics.json").is_file()


def test_resume_without_checkpoint_is_clear(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert run_cli("train", "--run-dir", tmp_path / "run", "--resume") == 2
    assert "config.yaml" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, digits_config):
    """DDP (gloo) on 2 CPU processes: Lightning re-launches the command; one run folder results."""
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MEDILAB_RUN_DIR", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "medilab.cli",
            "train",
            str(digits_config),
            "--run-dir",
            str(run_dir),
            "-o",
            "trainer.devices=2",
            "-o",
            "trainer.strategy=ddp",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "checkpoints/best.ckpt").is_file()
    assert (run_dir / "metrics.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["ddp"]
    # Each process sees half of the 160 training digits: 80 per epoch → 2 full batches of 32
    # (one process alone would take 5 steps an epoch).
    assert torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 4


def test_digits_predict_says_what_it_accepts_and_leaves_no_folder(tmp_path, digits_config):
    from medilab import api
    from medilab.errors import InputFileError

    run = api.train(digits_config, ["trainer.max_epochs=1"], tmp_path / "run",
                    evaluate_after=False)
    image = tmp_path / "x.png"
    image.write_bytes(b"\x89PNG")
    with pytest.raises(InputFileError, match="x.png: is a .png file; this run predicts from "
                                             "a pixel CSV"):
        api.predict(run, image, tmp_path / "out" / "sub.csv")
    with pytest.raises(InputFileError, match="is a folder"):
        api.predict(run, tmp_path, tmp_path / "masks")
    assert not (tmp_path / "masks").exists() and not (tmp_path / "out").exists()
