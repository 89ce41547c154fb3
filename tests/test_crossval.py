"""K-fold cross-validation: folds cover every sample once, each fold is a run, the summary is
the mean over folds, and a stopped cross-validation continues."""

import json
import os
import shutil
import socket

import numpy as np
import pandas as pd
import pytest
import yaml

from cli_samples import Forked, run_cli
from digits_samples import write_digits_csv
from medilab import api, cli
from medilab.config import validate_config
from medilab.crossval import assign_folds, cross_validate, fold_splits
from medilab.errors import InputFileError, MedilabError
from segmentation_samples import circles_config, write_circles


def test_folds_group_patients_stratify_labels_and_leave_test_out():
    splits = pd.DataFrame({
        "sample_id": [f"s{i}" for i in range(12)],
        "split": ["train"] * 10 + ["test"] * 2,
        "patient_id": [f"p{i // 2}" for i in range(12)],
        "label": [0, 0, 1, 1] * 3,
    })
    table = assign_folds(splits, 3, seed=0)
    assert list(table["fold"].iloc[-2:]) == [-1, -1]
    assert list(table["split"].iloc[-2:]) == ["test", "test"]
    assert (table["split"].iloc[:-2] == "fold" + table["fold"].iloc[:-2].astype(str)).all()
    pool = table[table["fold"] >= 0]
    assert sorted(pool["fold"].unique()) == [0, 1, 2]
    assert (pool.groupby("patient_id")["fold"].nunique() == 1).all()
    fold1 = fold_splits(table, 1, val_fraction=0.34, seed=0)
    pool = table[table["fold"] >= 0].reset_index(drop=True)
    assert len(fold1) == 10 and "fold" not in fold1.columns  # the global test rows left out
    assert set(fold1.loc[pool["fold"] == 1, "split"]) == {"test"}  # the outer fold: untouched
    inner = fold1[pool["fold"] != 1]
    assert set(inner["split"]) == {"train", "val"}  # the inner val selects
    assert (fold1.groupby("patient_id")["split"].nunique() == 1).all()
    assert fold1.equals(fold_splits(table, 1, val_fraction=0.34, seed=0))
    assert assign_folds(splits, 3, seed=0)["fold"].equals(table["fold"])  # seeded


def test_too_many_folds_is_a_clear_error():
    splits = pd.DataFrame({"sample_id": ["a", "b", "c"], "split": ["train"] * 3,
                           "patient_id": ["p", "p", "q"]})
    with pytest.raises(MedilabError, match="--folds 3: need 2 to 2 .*patients"):
        assign_folds(splits, 3, seed=0)


def test_rare_class_falls_back_to_unstratified_folds():
    splits = pd.DataFrame({"sample_id": list("abcdef"), "split": ["train"] * 6,
                           "label": [0, 0, 0, 0, 0, 1]})
    table = assign_folds(splits, 3, seed=0)
    assert sorted(table["fold"].value_counts().tolist()) == [2, 2, 2]


@pytest.fixture(scope="module")
def crossval_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crossval")
    root = write_circles(tmp / "data", n=6)
    raw = circles_config(root)
    raw["trainer"]["max_epochs"] = 2
    out = tmp / "cv"
    summary = api.crossval(validate_config(raw), 3, out)
    return out, summary, raw


def test_every_sample_is_held_out_once_and_summarised(crossval_run):
    out, summary, _ = crossval_run
    folds = pd.read_csv(out / "folds.csv", dtype={"sample_id": str})
    assert sorted(folds["sample_id"]) == [f"{i:02d}" for i in range(6)]
    oof = pd.read_csv(out / "predictions_oof.csv", dtype={"sample_id": str})
    assert sorted(oof["sample_id"]) == sorted(folds["sample_id"])
    for k in range(3):
        held = pd.read_csv(out / f"fold{k}" / "splits.csv", dtype={"sample_id": str})
        outer_ids = set(held.loc[held["split"] == "test", "sample_id"])
        assert outer_ids == set(folds.loc[folds["fold"] == k, "sample_id"])
        assert set(oof.loc[oof["fold"] == k, "sample_id"]) == outer_ids
        inner_val = set(held.loc[held["split"] == "val", "sample_id"])
        assert inner_val and not inner_val & outer_ids  # selection never sees the outer fold
        metrics = json.loads((out / f"fold{k}" / "metrics.json").read_text())
        assert metrics["headline"] == "test"
        assert (out / f"fold{k}" / "report.html").is_file()
    assert summary["folds"] == 3 and summary["n"] == 6
    dice = summary["metrics"]["dice"]
    assert dice["weighted_mean"] == pytest.approx(oof["dice"].mean(), abs=1e-5)
    per_fold = pd.read_csv(out / "crossval.csv")
    assert dice["mean"] == pytest.approx(per_fold["dice"].mean())
    assert dice["std"] == pytest.approx(per_fold["dice"].std(ddof=1))
    assert json.loads((out / "crossval.json").read_text()) == summary
    assert (out / "compare.html").is_file()


def test_a_stopped_crossval_continues_without_retraining_finished_folds(crossval_run):
    out, summary, raw = crossval_run
    fold0 = (out / "fold0" / "checkpoints" / "best.ckpt").stat().st_mtime_ns
    (out / "fold2" / "metrics.json").unlink()  # as if stopped before fold 2's evaluation
    again = cross_validate(validate_config(raw), 3, out)
    assert (out / "fold0" / "checkpoints" / "best.ckpt").stat().st_mtime_ns == fold0
    assert (out / "fold2" / "metrics.json").is_file()
    assert again["n"] == summary["n"]
    with pytest.raises(InputFileError, match="different number of folds"):
        cross_validate(validate_config(raw), 2, out)


def test_report_of_a_crossval_folder_rebuilds_its_summary_and_pages(crossval_run):
    out, summary, _ = crossval_run
    (out / "compare.html").unlink()
    (out / "crossval.json").unlink()
    (out / "fold1" / "report.html").unlink()
    assert api.write_report(out) == out / "compare.html"
    assert json.loads((out / "crossval.json").read_text())["n"] == summary["n"]
    assert "fold1" in (out / "compare.html").read_text()
    assert (out / "fold1" / "report.html").is_file()


def test_a_non_empty_folder_without_folds_is_refused(tmp_path):
    root = write_circles(tmp_path / "data", n=4)
    (tmp_path / "cv").mkdir()
    (tmp_path / "cv" / "notes.txt").write_text("mine")
    with pytest.raises(InputFileError, match="not empty and has no folds.csv"):
        cross_validate(validate_config(circles_config(root)), 2, tmp_path / "cv")


def test_cli_prints_the_summary(tmp_path, capsys):
    root = write_circles(tmp_path / "data", n=4)
    config = tmp_path / "circles.yaml"
    raw = circles_config(root)
    raw["trainer"]["max_epochs"] = 1
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as done:
        cli.main(["crossval", str(config), "--folds", "2", "--run-dir", str(tmp_path / "cv"),
                  "-o", "evaluation.bootstrap_samples=10"])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    assert "dice:" in printed and "fold mean" in printed
    assert "2 folds, 4 held-out samples" in printed
    summary = json.loads((tmp_path / "cv" / "crossval.json").read_text())
    assert np.isfinite(summary["metrics"]["pixel_error"]["weighted_mean"])


def test_classification_folds_are_stratified_and_pool_out_of_fold_predictions(
    tmp_path, digits_config
):
    summary = cross_validate(digits_config, 3, tmp_path / "cv",
                             ["trainer.max_epochs=1", "evaluation.bootstrap_samples=10"])
    folds = pd.read_csv(tmp_path / "cv" / "folds.csv")
    share = pd.crosstab(folds["label"], folds["fold"], normalize="index")
    assert share.to_numpy().min() > 0.25  # every digit spread over the 3 folds
    oof = pd.read_csv(tmp_path / "cv" / "predictions_oof.csv")
    assert len(oof) == len(folds) == summary["n"]
    accuracy = (oof["label"] == oof["prediction"]).mean()
    assert summary["metrics"]["accuracy"]["weighted_mean"] == pytest.approx(accuracy, abs=1e-4)


# ------------------------------------------------------------- one fold per process (job arrays)
def small_digits_config(root):
    csv = write_digits_csv(root / "digits.csv", n=80)
    config = root / "digits.yaml"
    config.write_text(yaml.safe_dump({
        "experiment": "cv_digits", "seed": 3,
        "data": {"source": "pixel_csv", "train_csv": str(csv), "pixel_scale": 16,
                 "batch_size": 8},
        "model": {"name": "simple_nn", "kwargs": {"hidden_sizes": [8]}},
        "trainer": {"max_epochs": 1, "progress_bar": False, "deterministic": True,
                    "precision": "32-true"},
        "evaluation": {"bootstrap_samples": 10}}))
    return config


@pytest.mark.usefixtures("one_torch_thread")  # forked children must not inherit a thread pool
def test_folds_trained_by_two_processes_at_once_assemble_like_one_process(tmp_path, capsys):
    config = small_digits_config(tmp_path)
    reference = tmp_path / "reference"
    cross_validate(config, 2, reference)  # one process (no report pages: they cost seconds)
    out = tmp_path / "cv"
    workers = [Forked(("crossval", config, "--folds", 2, "--run-dir", out, "--fold", k),
                      tmp_path / f"log{k}.txt") for k in (0, 1)]
    codes = [worker.wait(timeout=180) for worker in workers]
    assert codes == [0, 0], [(tmp_path / f"log{k}.txt").read_text()[-2000:] for k in (0, 1)]
    assert "fold 1 of 2 is trained and evaluated" in (tmp_path / "log1.txt").read_text()
    assert not (out / "crossval.json").exists()  # a fold process writes no summary
    assert (out / "folds.csv").read_bytes() == (reference / "folds.csv").read_bytes()
    assert not list(out.glob(".*"))  # no lock or temporary file left
    stamps = [(out / f"fold{k}" / "checkpoints" / "best.ckpt").stat().st_mtime_ns
              for k in (0, 1)]

    assert run_cli("crossval", config, "--folds", 2, "--run-dir", out, "--assemble-only") == 0
    assert stamps == [(out / f"fold{k}" / "checkpoints" / "best.ckpt").stat().st_mtime_ns
                      for k in (0, 1)]  # assembled, nothing trained again
    ours = json.loads((out / "crossval.json").read_text())
    theirs = json.loads((reference / "crossval.json").read_text())
    assert ours["n"] == theirs["n"] == 80 and ours["metrics"].keys() == theirs["metrics"].keys()
    for name, values in theirs["metrics"].items():
        assert ours["metrics"][name] == pytest.approx(values, rel=1e-6, abs=1e-9), name
    pd.testing.assert_frame_equal(pd.read_csv(out / "predictions_oof.csv"),
                                  pd.read_csv(reference / "predictions_oof.csv"), rtol=1e-6)
    assert (out / "compare.html").is_file()
    capsys.readouterr()
    # a task of the array given other settings: refused before anything trains
    assert run_cli("crossval", config, "--folds", 2, "--run-dir", out, "--fold", 1,
                   "-o", "trainer.max_epochs=2") == 2
    assert "fold 0 was trained with trainer.max_epochs=1, the cross-validation now asks 2" \
        in capsys.readouterr().err

    # a fold not finished: --assemble-only lists it (with where it stands), trains nothing
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    (partial / "fold1" / "crossval_fold.json").unlink()
    (partial / ".fold0.lock").write_text(json.dumps({"pid": os.getppid(),
                                                     "host": socket.gethostname()}))
    (partial / "fold0" / "crossval_fold.json").unlink()
    capsys.readouterr()
    assert run_cli("crossval", config, "--folds", 2, "--run-dir", partial,
                   "--assemble-only") == 2
    err = capsys.readouterr().err
    assert f"cannot assemble, 2 of 2 folds not finished: fold0 (in progress (pid {os.getppid()}" \
        in err and "fold1 (trained, not evaluated)" in err and "Traceback" not in err
    # the plain command leaves fold 0 to the process holding it, finishes fold 1 meanwhile,
    # and refuses to assemble until fold 0 is done
    with pytest.raises(MedilabError, match="not assembled, 1 fold.s. still being trained by "
                                           f"other processes: fold0 .pid {os.getppid()} "):
        cross_validate(config, 2, partial)
    assert (partial / "fold1" / "crossval_fold.json").is_file()
    assert not (partial / "fold0" / "crossval_fold.json").is_file()
    assert (partial / "fold1" / "checkpoints" / "best.ckpt").stat().st_mtime_ns == stamps[1]


def test_a_fold_out_of_range_is_a_one_line_error(tmp_path, capsys):
    config = small_digits_config(tmp_path)
    for fold in (2, -1):
        assert run_cli("crossval", config, "--folds", 2, "--run-dir", tmp_path / "cv",
                       "--fold", fold) == 2
        err = capsys.readouterr().err
        assert f"error: --fold {fold}: out of range, the folds of --folds 2 are 0 to 1" in err
        assert err.count("\n") == 1
    assert run_cli("crossval", config, "--folds", 2, "--run-dir", tmp_path / "cv",
                   "--fold", 0, "--assemble-only") == 2
    assert "--fold trains one fold, --assemble-only trains none" in capsys.readouterr().err
    assert not (tmp_path / "cv").exists()
    assert run_cli("crossval", config, "--folds", 2, "--run-dir", tmp_path / "cv",
                   "--assemble-only") == 2
    assert "folds.csv: not found: no fold was started there" in capsys.readouterr().err
