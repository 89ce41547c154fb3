"""medilab.tune.search: a small tune end to end, its continuation, pruning and the page."""

from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest
import yaml

from cli_samples import run_cli
from medilab import api
from medilab.errors import InputFileError, MedilabError
from medilab.runfolder import METRICS_FILE, read_status
from medilab.tune import folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tune_config(make_tune_config):
    """The tiny digits config with a held-out test part and a 2-key search space file."""
    return make_tune_config()


def test_three_trials_give_the_table_the_page_and_a_held_out_best(tune_config, tmp_path):
    config, space = tune_config
    out = tmp_path / "tune"
    assert run_cli("tune", config, "--space", space, "--trials", 3, "--out", out) == 0
    table = pd.read_csv(out / "tune.csv")
    assert list(table["number"]) == [0, 1, 2]
    assert set(table["state"]) == {"COMPLETE"}
    assert list(table["run_dir"]) == ["trials/0000", "trials/0001", "trials/0002"]
    assert table["param:optimizer.lr"].between(1e-3, 1e-1).all()
    assert table["param:optimizer.lr"].nunique() == 3
    for row in table.itertuples():  # each trial: an ordinary run with its value and params
        run_dir = out / row.run_dir
        status = read_status(run_dir)
        assert status["state"] == "finished"
        assert status["training"]["best_score"] == pytest.approx(row.value)
        trained = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert trained["optimizer"]["lr"] == pytest.approx(row._4)
        assert trained["data"]["splits_csv"] == str(out / "splits.csv")
    best_row = table.loc[table["value"].idxmin()]  # val/loss: lower is better
    body = json.loads((out / "tune.json").read_text())
    assert body["best"]["number"] == best_row["number"]
    assert body["best"]["value"] == pytest.approx(best_row["value"])
    assert body["direction"] == "minimize"
    # the best trial alone is scored, once, on val and the held-out test part
    scored = [row.run_dir for row in table.itertuples()
              if (out / row.run_dir / METRICS_FILE).is_file()]
    assert scored == [best_row["run_dir"]]
    metrics = json.loads((out / best_row["run_dir"] / METRICS_FILE).read_text())
    assert set(metrics["splits"]) == {"val", "test"}
    page = (out / "tune.html").read_text()
    assert "selection figure: val" in page and "held-out figures: test" in page
    accuracy = metrics["splits"]["test"]["accuracy"]["value"]
    assert f"{accuracy:.3f}" in page
    assert page.count("<img src=\"data:image/png;base64,") == 3
    assert "http://" not in page and "https://" not in page

    # the same command again: nothing trained, nothing scored again
    stamp = (out / best_row["run_dir"] / METRICS_FILE).stat().st_mtime_ns
    assert run_cli("tune", config, "--space", space, "--trials", 3, "--out", out) == 0
    assert len(pd.read_csv(out / "tune.csv")) == 3
    assert (out / best_row["run_dir"] / METRICS_FILE).stat().st_mtime_ns == stamp

    # medilab report rebuilds the page; a tune folder is not a run folder
    (out / "tune.html").unlink()
    assert run_cli("report", out) == 0
    assert (out / "tune.html").read_text() == page
    with pytest.raises(Exception, match="a tune folder, not a run folder"):
        api.evaluate(out)

    # another space in the same folder is refused
    space.write_text("optimizer.lr: {uniform: [0.001, 0.01]}\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="tune.json: holds a tune of another config"):
        api.tune(config, out, 3, space)


def test_pruned_trials_count_and_say_so(tune_config, tmp_path, monkeypatch):
    config, space = tune_config
    # val/loss is always above -1: every trial is pruned at its first epoch
    monkeypatch.setattr(folder, "make_pruner",
                        lambda config: optuna.pruners.ThresholdPruner(upper=-1))
    out = tmp_path / "pruned"
    body = api.tune(config, out, 2, space)
    table = pd.read_csv(out / "tune.csv")
    assert list(table["state"]) == ["PRUNED", "PRUNED"]
    assert body["best"] is None
    for run_dir in table["run_dir"]:
        status = read_status(out / run_dir)
        assert status["state"] == "pruned"
        assert "pruned at epoch 0" in status["reason"]
    assert "No trial has completed yet" in (out / "tune.html").read_text()


def test_trials_that_fail_to_train_fail_alone_until_n_of_them_stop_the_tune(
        tune_config, tmp_path, monkeypatch):
    from medilab.tasks.classification import ClassificationModule

    real = ClassificationModule.training_step
    monkeypatch.setattr(ClassificationModule, "training_step",
                        lambda self, batch, i: real(self, batch, i) * float("nan"))
    config, space = tune_config
    out = tmp_path / "diverged"
    with pytest.raises(MedilabError, match="2 trials failed"):
        api.tune(config, out, 2, space)
    table = pd.read_csv(out / "tune.csv")
    assert list(table["state"]) == ["FAIL", "FAIL"]
    assert table["note"].str.contains("training loss is nan").all()


def test_a_timeout_that_has_passed_starts_no_trial(tune_config, tmp_path):
    config, space = tune_config
    out = tmp_path / "late"
    assert run_cli("tune", config, "--space", space, "--trials", 2, "--out", out,
                   "--timeout", "soon") == 2
    assert not out.exists()
    body = api.tune(config, out, 2, space, timeout_s=1e-9)
    assert body["best"] is None
    assert len(pd.read_csv(out / "tune.csv")) == 0


def test_pruning_waits_for_the_second_half_of_training():
    """A trial below the median at an early epoch runs on; at the same gap in the second half
    of training it is pruned."""
    from medilab.config import validate_config

    config = validate_config({"data": {"source": "sklearn_digits"}, "model": {"name": "simple_nn"},
                              "trainer": {"max_epochs": 10}})
    study = optuna.create_study(direction="maximize", pruner=folder.make_pruner(config))
    for _ in range(folder.PRUNE_AFTER_TRIALS):
        trial = study.ask()
        for epoch in range(10):
            trial.report(0.9, epoch)
        study.tell(trial, 0.9)
    weak = study.ask()
    for epoch in range(5):
        weak.report(0.5, epoch)
        assert not weak.should_prune(), f"pruned at epoch {epoch}, inside the warm-up"
    weak.report(0.5, 5)
    assert weak.should_prune()
