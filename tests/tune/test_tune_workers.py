"""Workers sharing one tune: real processes on one journal storage, kill -9 in the middle of a
trial, ``--workers K`` child processes. No trial lost or duplicated: N trials complete in all."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from medilab import run
from medilab.runfolder import read_status
from medilab.tune import search, worker
from medilab.tune.storage import local_journal
from test_kill_rerun import Forked, kill_when

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")]


@pytest.fixture
def tune_config(make_tune_config):
    return make_tune_config(bootstrap_samples=0)


def trials_of(out):
    import optuna

    return optuna.load_study(study_name="tiny_digits", storage=local_journal(out)).trials


def assert_n_complete(out, n):
    """``n`` complete trials with their own finished run folders; every other trial is a
    surplus ask or a killed one whose parameters a later trial took."""
    trials = trials_of(out)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == n
    folders = [t.user_attrs["run_dir"] for t in complete]
    assert len(set(folders)) == n
    for trial in complete:
        status = read_status(out / trial.user_attrs["run_dir"])
        assert status["training"]["best_score"] == pytest.approx(trial.value)
    for trial in trials:
        if trial.state.name != "COMPLETE":
            assert trial.state.name == "FAIL"
            assert trial.user_attrs.get("surplus") or trial.user_attrs.get("stale")
    return trials


def test_two_worker_processes_share_the_trials(tune_config, tmp_path):
    config, space = tune_config
    out = tmp_path / "tune"
    args = ("tune", config, "--space", space, "--trials", 4, "--out", out, "--worker-only")
    workers = [Forked(args, tmp_path / f"worker{i}.log") for i in range(2)]
    for i, process in enumerate(workers):
        assert process.wait(timeout=300) == 0, (tmp_path / f"worker{i}.log").read_text()[-2000:]
    trials = assert_n_complete(out, 4)
    assert {t.user_attrs["pid"] for t in trials if t.state.name == "COMPLETE"} == \
        {w.pid for w in workers}
    assert not (out / "tune.html").exists()  # workers only train
    body = search.tune(config, out, 4, space, evaluate=run.evaluate)  # assembles, trains none
    assert len(trials_of(out)) == len(trials)
    assert (out / body["best"]["run_dir"] / "metrics.json").is_file()
    assert len(pd.read_csv(out / "tune.csv")) == len(trials)


def test_a_tune_killed_in_a_trial_continues_to_n_trials(tune_config, tmp_path):
    config, space = tune_config
    out = tmp_path / "tune"
    log = tmp_path / "tune.log"
    process = Forked(("tune", config, "--space", space, "--trials", 3, "--out", out), log)
    kill_when(process, lambda: (out / "trials" / "0001" / "checkpoints" / "last.ckpt").is_file(),
              log)
    killed = trials_of(out)
    assert [t.state.name for t in killed] == ["COMPLETE", "RUNNING"]

    search.tune(config, out, 3, space, evaluate=run.evaluate)  # the same command again
    trials = assert_n_complete(out, 3)
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].user_attrs["stale"] is True
    assert trials[2].user_attrs["retry_of"] == 1
    assert trials[2].params == killed[1].params  # the killed trial's parameters, tried again
    table = pd.read_csv(out / "tune.csv")
    assert "tried again" in table.loc[1, "note"]
    assert read_status(out / "trials" / "0002")["state"] == "finished"
    assert read_status(out / "trials" / "0001")["state"] == "interrupted"


class ForkedWorker:
    """``subprocess.Popen`` of ``python -m medilab.tune.worker`` as a forked child running
    ``worker.main`` with the same environment: a real second process, without the seconds a
    fresh interpreter spends importing torch."""

    started: list[int] = []

    def __init__(self, argv, env):
        assert argv == [sys.executable, "-m", "medilab.tune.worker"]
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                os.environ.clear()
                os.environ.update(env)
                code = worker.main()
            finally:
                os._exit(code)
        ForkedWorker.started.append(self.pid)

    def wait(self):
        return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])


REAL_POPEN = subprocess.Popen


def forked_popen(argv, *args, **kwargs):
    """``subprocess.Popen`` with the tune's worker processes forked (:class:`ForkedWorker`);
    any other command (a library probing the system once per process) runs for real."""
    if argv == [sys.executable, "-m", "medilab.tune.worker"]:
        return ForkedWorker(argv, kwargs["env"])
    return REAL_POPEN(argv, *args, **kwargs)


def test_workers_option_starts_worker_processes(tune_config, tmp_path, monkeypatch):
    config, space = tune_config
    out = tmp_path / "tune"
    monkeypatch.setattr(search.subprocess, "Popen", forked_popen)
    ForkedWorker.started.clear()
    body = search.tune(config, out, 3, space, workers=2, evaluate=run.evaluate)
    trials = assert_n_complete(out, 3)
    assert len(ForkedWorker.started) == 1
    pids = {t.user_attrs["pid"] for t in trials if t.state.name == "COMPLETE"}
    assert pids == {os.getpid(), ForkedWorker.started[0]}
    assert body["best"]["number"] in [t.number for t in trials]
    assert (out / "tune.csv").is_file()


def test_a_worker_with_a_bad_request_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv(search.WORKER_ENV, json.dumps({"config": {"data": {}}, "out": "x"}))
    assert worker.main() == 2
    error = capsys.readouterr().err
    assert error.startswith("error: tune worker") and "missing required field 'model'" in error
    monkeypatch.delenv(search.WORKER_ENV)
    assert worker.main() == 2
    assert "started by medilab tune --workers" in capsys.readouterr().err


def test_worker_processes_train_cv_trials_as_fold_runs(tune_config, tmp_path, monkeypatch):
    """A --workers child gets the --cv folds too: every trial, whichever process ran it, is
    K fold runs on the tune's fold tables and its value their mean."""
    config, space = tune_config
    out = tmp_path / "tune"
    monkeypatch.setattr(search.subprocess, "Popen", forked_popen)
    ForkedWorker.started.clear()
    search.tune(config, out, 3, space, ["trainer.max_epochs=1"], workers=2, cv=2,
                evaluate=run.evaluate)
    trials = [t for t in trials_of(out) if t.state.name == "COMPLETE"]
    assert len(trials) == 3
    assert {t.user_attrs["pid"] for t in trials} == {os.getpid(), ForkedWorker.started[0]}
    for trial in trials:
        folds = [out / trial.user_attrs["run_dir"] / f"fold{k}" for k in range(2)]
        scores = [read_status(fold)["training"]["best_score"] for fold in folds]
        assert trial.value == pytest.approx(sum(scores) / 2)
        for k, fold in enumerate(folds):
            trained = yaml.safe_load((fold / "config.yaml").read_text())
            assert trained["data"]["splits_csv"] == str(out / "cv_splits" / f"fold{k}.csv")
