"""Reliability and security end to end: checkpoints carrying pickled code are refused by every
command that loads one, and a run folder is written by one training at a time."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medilab import api
from medilab.errors import MedilabError
from medilab.models.weights import read_state_dict
from medilab.run import RUN_DIR_ENV
from medilab.runfolder import LOCK_FILE, acquire_lock, release_lock, write_status


def write_digits_csv(path: Path, n: int, labelled: bool = True) -> Path:
    """The first ``n`` of scikit-learn's digits as a Kaggle-layout pixel CSV."""
    import pandas as pd
    from sklearn.datasets import load_digits

    digits = load_digits()
    frame = pd.DataFrame(digits.images[:n].reshape(n, -1).astype(int),
                         columns=[f"pixel{i}" for i in range(64)])
    if labelled:
        frame.insert(0, "label", digits.target[:n])
    frame.to_csv(path, index=False)
    return path


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Payload:
    """Unpickling this runs ``open(marker, "w")``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def plant_payload(path: Path, marker: Path) -> None:
    """Overwrite a checkpoint with a Lightning-looking dict whose state carries the payload."""
    torch.save({"state_dict": {"evil": Payload(marker)}, "epoch": 0}, path)


def assert_refused(call, marker: Path) -> str:
    with pytest.raises(MedilabError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    assert not marker.exists(), "the checkpoint's pickled code ran"
    return message


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A one-epoch digits run (evaluated, so report and predictions exist)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("rel")
    csv = write_digits_csv(root / "train.csv", n=120)
    config = root / "tiny.yaml"
    config.write_text(
        f"experiment: tiny\nseed: 1\n"
        f"data: {{source: pixel_csv, train_csv: {csv}, pixel_scale: 16, batch_size: 32}}\n"
        "model: {name: simple_nn, kwargs: {hidden_sizes: [16]}}\n"
        "trainer: {max_epochs: 1, progress_bar: false}\n"
        "evaluation: {bootstrap_samples: 20}\n", encoding="utf-8")
    return api.train(config, run_dir=root / "run")


@pytest.fixture
def poisoned_run(trained_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the trained run whose best and last checkpoints carry the payload."""
    run = tmp_path / "poisoned"
    shutil.copytree(trained_run, run)
    marker = tmp_path / "pwned"
    for name in ("best", "last"):
        plant_payload(run / "checkpoints" / f"{name}.ckpt", marker)
    return run, marker


def test_evaluate_refuses_pickled_code(poisoned_run):
    run, marker = poisoned_run
    message = assert_refused(lambda: api.evaluate(run), marker)
    assert "best.ckpt" in message and "not a readable checkpoint" in message


def test_evaluate_last_refuses_pickled_code(poisoned_run):
    run, marker = poisoned_run
    assert "last.ckpt" in assert_refused(lambda: api.evaluate(run, checkpoint="last"), marker)


def test_predict_refuses_pickled_code(poisoned_run, tmp_path):
    run, marker = poisoned_run
    test_csv = write_digits_csv(tmp_path / "test.csv", n=10, labelled=False)
    out = tmp_path / "submission.csv"
    assert_refused(lambda: api.predict(run, test_csv, out), marker)
    assert not out.exists()


def test_explain_refuses_before_explaining(poisoned_run, tmp_path):
    run, marker = poisoned_run
    image = tmp_path / "x.png"
    image.write_bytes(b"not read: the checkpoint fails first")
    assert_refused(lambda: api.explain(run, image, tmp_path / "cams"), marker)
    assert not (tmp_path / "cams").exists()


def test_ensemble_refuses_a_poisoned_member(trained_run, poisoned_run, tmp_path):
    run, marker = poisoned_run
    message = assert_refused(lambda: api.ensemble([trained_run, run], tmp_path / "ens"), marker)
    assert "poisoned" in message


def test_resume_refuses_pickled_last_checkpoint(poisoned_run):
    run, marker = poisoned_run
    write_status(run, "interrupted")
    message = assert_refused(lambda: api.train(None, run_dir=run, resume=True), marker)
    assert "last.ckpt" in message
    assert not (run / LOCK_FILE).exists()


def test_pretrained_weights_file_refuses_pickled_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pth"
    plant_payload(path, marker)
    assert "not a readable weights file" in assert_refused(lambda: read_state_dict(path), marker)


def test_payload_really_runs_when_loaded_unsafely(tmp_path):
    """The payload is live: loading it without weights_only creates the marker."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    plant_payload(path, marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


# ----------------------------------------------------------------------------- run-folder lock
def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(run_dir: Path, pid: int, host: str | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname()}))
    return path


def test_lock_holds_pid_and_host_and_is_released(tmp_path):
    path = acquire_lock(tmp_path / "run")
    assert json.loads(path.read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}
    release_lock(tmp_path / "run")
    assert not path.exists()


def test_lock_of_a_live_process_refuses(tmp_path):
    write_lock(tmp_path, os.getpid())
    with pytest.raises(MedilabError, match=f"pid {os.getpid()}"):
        acquire_lock(tmp_path)


def test_lock_on_another_host_is_assumed_live(tmp_path):
    write_lock(tmp_path, dead_pid(), host="some-other-node")
    with pytest.raises(MedilabError, match="some-other-node"):
        acquire_lock(tmp_path)


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    write_lock(tmp_path, dead_pid())
    path = acquire_lock(tmp_path)
    assert json.loads(path.read_text())["pid"] == os.getpid()


def test_unreadable_lock_is_stale(tmp_path):
    (tmp_path / LOCK_FILE).write_text("garbage")
    assert json.loads(acquire_lock(tmp_path).read_text())["pid"] == os.getpid()


def test_second_training_into_a_locked_folder_is_refused(digits_config, tmp_path):
    run = tmp_path / "run"
    lock = write_lock(run, os.getpid())
    with pytest.raises(MedilabError, match="another training"):
        api.train(digits_config, run_dir=run)
    assert lock.exists() and [p.name for p in run.iterdir()] == [LOCK_FILE]
    assert RUN_DIR_ENV not in os.environ  # a later run in this process is not a DDP process


def test_refused_fresh_folder_leaves_no_lock(digits_config, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("someone else's")
    with pytest.raises(MedilabError, match="not empty"):
        api.train(digits_config, run_dir=run)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    assert RUN_DIR_ENV not in os.environ


def test_training_takes_over_a_dead_lock_and_releases_it(digits_config, tmp_path):
    run = tmp_path / "run"
    write_lock(run, dead_pid())
    folder = api.train(digits_config, ["trainer.max_epochs=1"], run_dir=run,
                       evaluate_after=False)
    assert (folder / "checkpoints" / "last.ckpt").is_file()
    assert not (folder / LOCK_FILE).exists()


def test_failed_training_releases_the_lock(digits_config, tmp_path, monkeypatch):
    from medilab import run as engine

    def boom(*args, **kwargs):
        raise MedilabError("boom")

    monkeypatch.setattr(engine, "build_trainer", boom)
    with pytest.raises(MedilabError, match="boom"):
        api.train(digits_config, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_ddp_extra_processes_do_not_take_the_lock(digits_config, tmp_path, monkeypatch):
    """Lightning's launcher re-runs train in extra processes with MEDILAB_RUN_DIR set to the
    folder that rank 0 holds locked: they must not be refused by (or remove) that lock."""
    run = tmp_path / "run"
    lock = write_lock(run, os.getppid())
    monkeypatch.setenv(RUN_DIR_ENV, str(run))
    api.train(digits_config, ["trainer.max_epochs=1"], run_dir=run, evaluate_after=False)
    assert json.loads(lock.read_text())["pid"] == os.getppid()


# ----------------------------------------------------------------------------- unfinished runs
@pytest.mark.parametrize("state", ["running", "interrupted", "failed"])
def test_report_and_compare_warn_on_unfinished_runs(trained_run, tmp_path, state):
    from medilab.reports.compare import compare_runs
    from medilab.reports.report import build_report

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    write_status(run, state, reason="disk full" if state == "failed" else None)
    with pytest.warns(UserWarning, match=f"training is {state}") as caught:
        build_report(run)
    assert f"{run}: training is {state}" in str(caught[0].message)
    with pytest.warns(UserWarning, match=f"{run}: training is {state}"):
        compare_runs([trained_run, run], tmp_path / "compare.html")


def test_report_of_a_finished_run_does_not_warn(trained_run, recwarn):
    from medilab.reports.report import build_report
    from medilab.runfolder import read_status

    assert read_status(trained_run)["state"] == "finished"
    build_report(trained_run)
    assert not [w for w in recwarn if "training is" in str(w.message)]


def test_cli_report_prints_one_warning_line(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    write_status(run, "interrupted", reason="stopped by the user")
    done = subprocess.run([sys.executable, "-m", "medilab.cli", "report", str(run)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "training is" in line]
    assert lines == [f"warning: {run}: training is interrupted (stopped by the user); its "
                     "results are from an unfinished run"]


# ----------------------------------------------------------------------------- kill -9, resume
def write_resume_config(root: Path) -> Path:
    csv = write_digits_csv(root / "train.csv", n=600)
    config = root / "resume.yaml"
    config.write_text(
        f"experiment: killed\nseed: 3\n"
        f"data: {{source: pixel_csv, train_csv: {csv}, pixel_scale: 16, batch_size: 4}}\n"
        "model: {name: simple_nn, kwargs: {hidden_sizes: [32], dropout: 0.2}}\n"
        "optimizer: {name: adam, lr: 0.003}\n"
        "trainer: {max_epochs: 4, progress_bar: false, deterministic: true,\n"
        "          early_stopping: {enabled: false}}\n"
        "evaluation: {bootstrap_samples: 20}\n", encoding="utf-8")
    return config


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "medilab.cli", *args]


def single_thread_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def wait_for_loadable(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``path`` holds a checkpoint torch can read (the first finished epoch)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "training ended before it could be killed"
        if path.is_file():
            try:
                torch.load(path, map_location="cpu", weights_only=True)
                return
            except Exception:  # noqa: BLE001 - still being written
                pass
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear in {timeout} s")


@pytest.mark.slow
def test_resume_after_kill_9_equals_an_uninterrupted_run(tmp_path):
    import signal

    import pandas as pd

    config = write_resume_config(tmp_path)
    whole = api.train(config, run_dir=tmp_path / "whole")  # one thread, like the CLI runs

    killed = tmp_path / "killed"
    process = subprocess.Popen(cli("train", str(config), "--run-dir", str(killed)),
                               env=single_thread_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_loadable(killed / "checkpoints" / "last.ckpt", process)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert json.loads((killed / LOCK_FILE).read_text())["pid"] == process.pid
    stopped_at = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]
    assert stopped_at < 3, "the run finished before the kill"

    done = subprocess.run(cli("train", "--run-dir", str(killed), "--resume"),
                          env=single_thread_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not (killed / LOCK_FILE).exists()

    def val_losses(run: Path) -> pd.Series:
        curves = pd.read_csv(run / "metrics.csv")
        return curves.dropna(subset=["val/loss"]).set_index("epoch")["val/loss"]

    pd.testing.assert_series_equal(val_losses(killed), val_losses(whole))
    assert list(val_losses(whole).index) == [0, 1, 2, 3]
    resumed = json.loads((killed / "metrics.json").read_text())["splits"]["val"]
    uninterrupted = json.loads((whole / "metrics.json").read_text())["splits"]["val"]
    assert resumed["accuracy"]["value"] == uninterrupted["accuracy"]["value"]
    assert json.loads((killed / "status.json").read_text())["state"] == "finished"
