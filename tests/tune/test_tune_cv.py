"""medilab.tune.cv: ``medilab tune --cv K`` trains K fold runs per trial on the non-test
samples, scores the trial by their mean, retrains the best on the whole split and scores it on
the held-out test part once."""

from __future__ import annotations

import json
import os

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from cli_samples import run_cli
from medilab import api, run
from medilab.data.splits import load_splits
from medilab.errors import InputFileError, MedilabError
from medilab.runfolder import METRICS_FILE, SPLITS_FILE, read_status
from medilab.tune import cv, folder, search
from medilab.tune.storage import local_journal
from test_kill_rerun import Forked, kill_when

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tune_config(make_tune_config):
    """The tiny digits config (1 epoch) with a held-out test part and a 2-key space."""
    return make_tune_config(max_epochs=1, bootstrap_samples=0)


def ids(table: pd.DataFrame, split: str) -> set[str]:
    return set(table.loc[table["split"] == split, "sample_id"].astype(str))


def test_cv_trials_are_fold_runs_and_the_best_is_retrained_and_scored_on_test(
        tune_config, tmp_path, capsys):
    config, space = tune_config
    out = tmp_path / "tune"
    assert run_cli("tune", config, "--space", space, "--trials", 2, "--cv", 2, "--out", out) == 0
    shared = load_splits(out / "splits.csv")
    test_ids = ids(shared, "test")
    pool = ids(shared, "train") | ids(shared, "val")
    assert test_ids and pool and not test_ids & pool

    table = pd.read_csv(out / "tune.csv")
    assert list(table["state"]) == ["COMPLETE", "COMPLETE"]
    val_parts = {}
    for row in table.itertuples():
        scores = []
        for k in range(2):
            fold_dir = out / row.run_dir / f"fold{k}"
            status = read_status(fold_dir)
            assert status["state"] == "finished"
            scores.append(status["training"]["best_score"])
            splits = load_splits(fold_dir / SPLITS_FILE)
            val, train = ids(splits, "val"), ids(splits, "train")
            assert not (val | train) & test_ids  # the test part is in no fold run
            assert val | train == pool and not val & train
            assert val_parts.setdefault(k, val) == val  # the same folds in every trial
            assert not (fold_dir / METRICS_FILE).exists()  # no trial is scored
        assert row.fold0 == pytest.approx(scores[0])
        assert row.fold1 == pytest.approx(scores[1])
        assert row.value == pytest.approx(np.mean(scores))  # the trial's value: the fold mean
        assert row.fold_std == pytest.approx(np.std(scores, ddof=1))
    assert not val_parts[0] & val_parts[1] and val_parts[0] | val_parts[1] == pool

    body = json.loads((out / "tune.json").read_text())
    best = body["best"]
    assert body["cv"] == 2 and best["folds"] == 2
    assert best["value"] == pytest.approx(table["value"].min())  # val/loss: lower is better
    assert best["held_out_run_dir"] == f"best/{best['number']:04d}"
    best_dir = out / best["held_out_run_dir"]  # the best params on the whole original split
    assert read_status(best_dir)["state"] == "finished"
    trained = yaml.safe_load((best_dir / "config.yaml").read_text())
    assert trained["data"]["splits_csv"] == str(out / "splits.csv")
    assert trained["optimizer"]["lr"] == pytest.approx(best["params"]["optimizer.lr"])
    assert load_splits(best_dir / SPLITS_FILE).equals(shared)
    metrics = json.loads((best_dir / METRICS_FILE).read_text())
    assert set(metrics["splits"]) == {"val", "test"}
    assert metrics["n"]["test"] == len(test_ids)
    page = (out / "tune.html").read_text()
    assert "selection: mean val/loss over 2 folds" in page
    accuracy = metrics["splits"]["test"]["accuracy"]["value"]
    assert f"{accuracy:.3f}" in page
    assert "over 2 folds" in capsys.readouterr().out

    # the same folder again without --cv keeps its folds; nothing trains or is scored again
    stamp = (best_dir / METRICS_FILE).stat().st_mtime_ns
    assert run_cli("tune", config, "--space", space, "--trials", 2, "--out", out) == 0
    assert json.loads((out / "tune.json").read_text())["cv"] == 2
    assert (best_dir / METRICS_FILE).stat().st_mtime_ns == stamp
    assert len(pd.read_csv(out / "tune.csv")) == 2

    # another K on the same folder is refused, in one line
    capsys.readouterr()
    assert run_cli("tune", config, "--space", space, "--trials", 2, "--cv", 3, "--out", out) == 2
    error = capsys.readouterr().err.strip()
    assert "tune.json: holds a tune with --cv 2, not --cv 3" in error and "\n" not in error
    plain = tmp_path / "plain"  # a tune without --cv (no trial started) cannot become one
    api.tune(config, plain, 1, space, timeout_s=1e-9)
    with pytest.raises(InputFileError, match="with no --cv, not --cv 2"):
        api.tune(config, plain, 1, space, cv=2)


@pytest.mark.parametrize("k", [0, 1, 100_000])
def test_a_bad_k_is_one_line_naming_cv_and_writes_nothing(tune_config, tmp_path, capsys, k):
    config, space = tune_config
    out = tmp_path / "bad"
    assert run_cli("tune", config, "--space", space, "--trials", 2, "--cv", k,
                   "--out", out) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: --cv {k}: need") and "\n" not in error
    assert not out.exists()


def test_a_cv_trial_is_pruned_on_its_running_mean_after_a_fold(tune_config, tmp_path,
                                                                 monkeypatch):
    config, space = tune_config
    # val/loss is always above -1: every trial is pruned after its first fold
    monkeypatch.setattr(folder, "cv_pruner", lambda: optuna.pruners.ThresholdPruner(upper=-1))
    out = tmp_path / "pruned"
    body = api.tune(config, out, 1, space, cv=2)
    table = pd.read_csv(out / "tune.csv")
    assert list(table["state"]) == ["PRUNED"]
    assert table["note"][0].startswith("pruned after fold 0")
    assert table["fold0"][0] == pytest.approx(
        read_status(out / "trials/0000/fold0")["training"]["best_score"])
    assert pd.isna(table["fold1"][0]) and not (out / "trials/0000/fold1").exists()
    assert body["best"] is None and not (out / "best").exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_cv_tune_killed_in_a_fold_and_in_the_retraining_continues(tune_config, tmp_path):
    config, space = tune_config
    out = tmp_path / "tune"
    args = ("tune", config, "--space", space, "--trials", 2, "--cv", 2, "--out", out)
    fold1 = out / "trials" / "0000" / "fold1"
    kill_when(Forked(args, tmp_path / "first.log"), lambda: (fold1 / "status.json").is_file(),
              tmp_path / "first.log")
    refit = out / "best"
    kill_when(Forked(args, tmp_path / "second.log"), lambda: any(refit.glob("*/status.json")),
              tmp_path / "second.log")
    assert not any(refit.glob(f"*/{METRICS_FILE}"))  # killed while retraining the best
    assert not (out / "tune.html").exists()

    body = search.tune(config, out, 2, space, evaluate=run.evaluate)  # the same command again
    trials = optuna.load_study(study_name="tiny_digits", storage=local_journal(out)).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[0].user_attrs["stale"] and trials[1].user_attrs["retry_of"] == 0
    assert trials[1].params == trials[0].params
    assert read_status(fold1)["state"] == "interrupted"
    for trial in trials[1:]:
        scores = [read_status(out / trial.user_attrs["run_dir"] / f"fold{k}")["training"]
                  ["best_score"] for k in range(2)]
        assert trial.value == pytest.approx(np.mean(scores))
    best = body["best"]
    assert best["evaluated"] and best["held_out_run_dir"] == f"best/{best['number']:04d}"
    assert read_status(out / best["held_out_run_dir"])["state"] == "finished"
    assert (out / best["held_out_run_dir"] / METRICS_FILE).is_file()

    (out / "tune.html").unlink()  # medilab report rebuilds the page from the folder
    assert run_cli("report", out) == 0
    assert "selection: mean val/loss over 2 folds" in (out / "tune.html").read_text()


def test_folds_keep_patients_together_and_the_test_part_out(tmp_path):
    """The fold tables of a split with patients: a patient's samples share one fold; fold k
    is run k's val part, the others its train part; test rows stay test in every table."""
    patients = [f"p{i // 3}" for i in range(30)]  # 10 patients, 3 samples each
    splits = pd.DataFrame({"sample_id": [str(i) for i in range(30)],
                           "split": ["test"] * 6 + ["val"] * 6 + ["train"] * 18,
                           "patient_id": patients, "label": [i % 2 for i in range(30)]})
    paths = cv.write_folds(tmp_path, splits, 4, seed=3)
    assert [p.name for p in paths] == ["fold0.csv", "fold1.csv", "fold2.csv", "fold3.csv"]
    folds = load_splits(tmp_path / cv.FOLDS_FILE)
    assert (folds.loc[folds["split"] == "test", "fold"] == -1).all()
    assert folds[folds["fold"] >= 0].groupby("patient_id")["fold"].nunique().max() == 1
    vals = []
    for k, path in enumerate(paths):
        table = load_splits(path)
        assert ids(table, "test") == set(map(str, range(6)))
        val_patients = set(table.loc[table["split"] == "val", "patient_id"])
        train_patients = set(table.loc[table["split"] == "train", "patient_id"])
        assert val_patients and not val_patients & train_patients
        assert ids(table, "val") == set(folds.loc[folds["fold"] == k, "sample_id"])
        vals.append(ids(table, "val"))
    assert set().union(*vals) == set(map(str, range(6, 30))) and sum(map(len, vals)) == 24
    # written once: a second call (another worker, a rerun) reads the same files back
    assert cv.write_folds(tmp_path, splits.sample(frac=1, random_state=0), 4, seed=9) == paths
    assert load_splits(tmp_path / cv.FOLDS_FILE).equals(folds)
    with pytest.raises(MedilabError, match="--cv 11: need 2 to 8 .*patients"):
        cv.write_folds(tmp_path / "other", splits, 11, seed=3)
