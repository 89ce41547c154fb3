"""kill -9 in the middle of a command, then the same command again: it continues, the outputs
equal an uninterrupted run's, and no file is ever left truncated under its final name
(``.name.*`` temporary files may be).

``dicom convert`` and the atomic writer run as ``python -m medilab.cli`` / ``python -c``
processes; the commands that train run in a forked child of the test process (``Forked``),
which is killed just the same but does not spend seconds importing torch and Lightning again.
Kill points are found by polling the outputs (and /proc/PID/fd), never by hooks in the code."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from cli_samples import Forked, run_cli
from dicom_samples import write_dicom, write_dicom_folder
from digits_samples import write_digits_csv
from medilab import api
from medilab.crossval import FOLD_DONE_FILE
from medilab.io.convert import ConvertOptions, convert_tree
from study_samples import write_npz

pytestmark = [pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc"),
              pytest.mark.usefixtures("one_torch_thread")]


# ----------------------------------------------------------------------------- helpers
def cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "medilab.cli", *(str(a) for a in args)]


def start(command: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def kill_when(process: subprocess.Popen | Forked, ready: Callable[[], bool], log: Path,
              timeout: float = 120) -> None:
    """SIGKILL ``process`` as soon as ``ready()``; fail if it ends first."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if process.poll() is not None:
                raise AssertionError(f"ended (code {process.returncode}) before it could be "
                                     f"killed:\n{log.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready to be killed after {timeout} s")
            time.sleep(0.005)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def open_files(pid: int) -> list[str]:
    """The files process ``pid`` has open (Linux)."""
    names = []
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                names.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return names


def loadable_epoch(path: Path) -> int | None:
    """The epoch of a checkpoint torch can read, else None (missing or still being written)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # noqa: BLE001
        return None


def assert_nothing_truncated(folder: Path) -> list[Path]:
    """Every file under ``folder`` with a final name (not ``.name.*``) reads whole: CSVs parse,
    PNGs decode, JSON and YAML load, checkpoints load. Returns the files checked."""
    checked = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in
                                     path.relative_to(folder).parts):
            continue
        suffix = path.suffix.lower()
        if suffix == ".csv":
            pd.read_csv(path)
        elif suffix == ".png":
            with Image.open(path) as image:
                image.load()
        elif suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif suffix == ".yaml":
            yaml.safe_load(path.read_text(encoding="utf-8"))
        elif suffix == ".ckpt":
            assert loadable_epoch(path) is not None, path
        checked.append(path)
    return checked


def assert_same_table(a: Path, b: Path, drop: tuple[str, ...] = ()) -> None:
    left = pd.read_csv(a).drop(columns=list(drop), errors="ignore")
    right = pd.read_csv(b).drop(columns=list(drop), errors="ignore")
    pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=1e-6, atol=1e-9)


def digits_config(root: Path, n: int, epochs: int) -> Path:
    csv = write_digits_csv(root / "digits.csv", n=n)
    config = root / "digits.yaml"
    config.write_text(
        f"experiment: killed\nseed: 5\n"
        f"data: {{source: pixel_csv, train_csv: {csv}, pixel_scale: 16, batch_size: 4}}\n"
        "model: {name: simple_nn, kwargs: {hidden_sizes: [16]}}\n"
        "optimizer: {name: adam, lr: 0.003}\n"
        f"trainer: {{max_epochs: {epochs}, progress_bar: false, deterministic: true,\n"
        "          precision: 32-true, early_stopping: {enabled: false}}\n"
        "evaluation: {bootstrap_samples: 20}\n", encoding="utf-8")
    return config


# ----------------------------------------------------------------------------- atomic writes
WRITER = """
import sys
import pandas as pd
from medilab.io.atomic import write_csv
frame = pd.DataFrame({"a": range(3_000_000), "b": 0.5, "c": "text"})
write_csv(frame, sys.argv[1])
"""


@pytest.mark.parametrize("earlier", [False, True], ids=["new", "replacing"])
def test_kill_during_an_atomic_write_leaves_the_old_file_or_none(tmp_path, earlier):
    target = tmp_path / "big.csv"
    if earlier:
        target.write_text("a,b,c\n1,0.5,old\n")
    log = tmp_path / "log.txt"
    process = start([sys.executable, "-c", WRITER, str(target)], log)

    def writing() -> bool:
        return any(p.stat().st_size > 1_000_000 for p in tmp_path.glob(".big.csv.*"))

    kill_when(process, writing, log)
    partial = list(tmp_path.glob(".big.csv.*"))
    assert partial, "the kill did not land during the write"
    if earlier:
        assert target.read_text() == "a,b,c\n1,0.5,old\n"
    else:
        assert not target.exists()


# ----------------------------------------------------------------------------- dicom convert
def test_dicom_convert_killed_mid_batch_continues(tmp_path):
    src, n, blocked = tmp_path / "dicoms", 40, 20
    paths = write_dicom_folder(src, n)
    reference = tmp_path / "reference"
    convert_tree(src, reference, ConvertOptions(salt="s"), progress=False)

    # file 20 is a named pipe that nobody writes: the conversion stops there, half way through
    # the batch, and is killed once the file before it is done
    paths[blocked].unlink()
    os.mkfifo(paths[blocked])
    dst, log = tmp_path / "png", tmp_path / "log.txt"
    process = start(cli("dicom", "convert", src, dst, "--salt", "s"), log)
    kill_when(process, (dst / f"img{blocked - 1:03d}.png").is_file, log)
    assert sorted(p.name for p in dst.glob("*.png")) == [f"img{i:03d}.png" for i in range(blocked)]
    assert not (dst / "manifest.csv").exists()
    assert_nothing_truncated(dst)

    paths[blocked].unlink()
    write_dicom(paths[blocked], blocked)
    assert run_cli("dicom", "convert", src, dst, "--salt", "s") == 0
    assert (dst / "manifest.csv").read_text() == (reference / "manifest.csv").read_text()
    assert (dst / "errors.csv").read_text() == (reference / "errors.csv").read_text()
    for i in range(n):
        with Image.open(dst / f"img{i:03d}.png") as ours, \
                Image.open(reference / f"img{i:03d}.png") as theirs:
            assert ours.mode == theirs.mode and np.array_equal(np.asarray(ours),
                                                               np.asarray(theirs))


# ----------------------------------------------------------------------------- predict
def write_image_table(root: Path, n: int, labelled: bool = True) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        image = rng.integers(0, 80, (16, 16)).astype(np.uint8)
        if i % 2:
            image[5:11, 5:11] = 220
        Image.fromarray(image).save(root / "images" / f"img{i:03d}.png")
        rows.append({"image": f"img{i:03d}.png", "patient_id": f"p{i}",
                     "label": "finding" if i % 2 else "none"})
    if labelled:
        pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def test_predict_on_a_folder_killed_then_rerun(tmp_path):
    root = write_image_table(tmp_path / "data", 24)
    run = api.train(_table_config(tmp_path, root), run_dir=tmp_path / "run",
                    evaluate_after=False)
    # enough inputs that reading them lasts many polls, even on a fast machine
    inputs = write_image_table(tmp_path / "new", 2000, labelled=False) / "images"
    reference = api.predict(run, inputs, tmp_path / "reference.csv")

    out, log = tmp_path / "out" / "preds.csv", tmp_path / "log.txt"
    process = Forked(("predict", run, inputs, "--out", out), log)
    kill_when(process, lambda: any(name.startswith(str(inputs)) or "/.preds.csv." in name
                                   for name in open_files(process.pid))
              or any(out.parent.glob(".preds.csv.*")), log)
    assert not out.exists()
    if out.parent.exists():
        assert_nothing_truncated(out.parent)

    assert run_cli("predict", run, inputs, "--out", out) == 0
    assert_same_table(out, reference)
    assert len(pd.read_csv(out)) == 2000


def _table_config(tmp_path: Path, root: Path) -> Path:
    config = tmp_path / "table.yaml"
    config.write_text(yaml.safe_dump({
        "experiment": "table", "task": "classification", "seed": 3,
        "data": {"source": "image_table", "root": str(root), "batch_size": 8},
        "model": {"name": "convnet", "kwargs": {"widths": [4], "convs": 1}},
        "trainer": {"max_epochs": 1, "progress_bar": False, "precision": "32-true"},
    }), encoding="utf-8")
    return config


# ----------------------------------------------------------------------------- train, twice
def test_train_killed_twice_keeps_every_epoch(tmp_path):
    """Lightning starts metrics.csv afresh when a resumed fit begins: a second kill during the
    resumed fit must not lose the epochs from before the first one."""
    config = digits_config(tmp_path, n=240, epochs=4)
    whole = api.train(config, run_dir=tmp_path / "whole", evaluate_after=False)
    run, log = tmp_path / "killed", tmp_path / "log.txt"
    last = run / "checkpoints" / "last.ckpt"
    process = Forked(("train", config, "--run-dir", run, "--no-evaluate"), log)
    kill_when(process, lambda: loadable_epoch(last) is not None, log)
    first = loadable_epoch(last)
    process = Forked(("train", "--run-dir", run, "--resume", "--no-evaluate"), log)
    kill_when(process, lambda: (loadable_epoch(last) or 0) > first, log)
    assert loadable_epoch(last) < 3, "the resumed run finished before the second kill"
    assert_nothing_truncated(run)

    assert run_cli("train", "--run-dir", run, "--resume", "--no-evaluate") == 0
    pd.testing.assert_series_equal(val_losses(run), val_losses(whole))
    assert list(val_losses(run).index) == [0, 1, 2, 3]
    assert not list(run.glob(".metrics*"))


# ----------------------------------------------------------------------------- crossval
CROSSVAL_FILES = ("folds.csv", "crossval.csv", "predictions_oof.csv")


def val_losses(run: Path) -> pd.Series:
    curves = pd.read_csv(run / "metrics.csv")
    return curves.dropna(subset=["val/loss"]).set_index("epoch")["val/loss"]


@pytest.fixture(scope="module")
def crossval_reference(tmp_path_factory) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cv")
    config = digits_config(root, n=240, epochs=3)
    out = root / "reference"
    api.crossval(config, 2, out)
    return config, out


def assert_same_crossval(out: Path, reference: Path) -> None:
    for name in CROSSVAL_FILES:
        assert_same_table(out / name, reference / name)
    ours = json.loads((out / "crossval.json").read_text())
    theirs = json.loads((reference / "crossval.json").read_text())
    assert ours["n"] == theirs["n"] and ours["metrics"].keys() == theirs["metrics"].keys()
    for name, values in theirs["metrics"].items():
        assert ours["metrics"][name] == pytest.approx(values, rel=1e-6, abs=1e-9), name
    for k in (0, 1):
        pd.testing.assert_series_equal(val_losses(out / f"fold{k}"),
                                       val_losses(reference / f"fold{k}"))
        assert (out / f"fold{k}" / "report.html").is_file()


def test_crossval_killed_during_a_fold_continues(crossval_reference, tmp_path):
    config, reference = crossval_reference
    out, log = tmp_path / "cv", tmp_path / "log.txt"
    process = Forked(("crossval", config, "--folds", 2, "--run-dir", out), log)
    last = out / "fold0" / "checkpoints" / "last.ckpt"
    kill_when(process, lambda: loadable_epoch(last) is not None, log)
    assert loadable_epoch(last) < 2, "fold 0 finished before the kill"
    assert not (out / "fold0" / "metrics.json").exists()
    assert_nothing_truncated(out)

    assert run_cli("crossval", config, "--folds", 2, "--run-dir", out) == 0
    assert_same_crossval(out, reference)


def test_crossval_killed_during_evaluation_evaluates_without_retraining(crossval_reference,
                                                                        tmp_path):
    """What a kill leaves between a fold's training and the end of its evaluation (metrics,
    predictions or report not yet written): the rerun evaluates, it does not train again."""
    config, reference = crossval_reference
    out = tmp_path / "cv"
    shutil.copytree(reference, out)
    fold = out / "fold1"
    for name in ("metrics.json", "report.html", "predictions_val.csv", FOLD_DONE_FILE):
        (fold / name).unlink(missing_ok=True)
    (out / "crossval.json").unlink()
    stamp = (fold / "checkpoints" / "best.ckpt").stat().st_mtime_ns
    assert run_cli("crossval", config, "--folds", 2, "--run-dir", out) == 0
    assert (fold / "checkpoints" / "best.ckpt").stat().st_mtime_ns == stamp
    assert_same_crossval(out, reference)


# ----------------------------------------------------------------------------- study
@pytest.fixture(scope="module")
def study_reference(tmp_path_factory) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("study")
    base = {"task": "classification", "seed": 1,
            "data": {"source": "medmnist", "path": str(write_npz(root / "d.npz")),
                     "batch_size": 8},
            "model": {"name": "convnet", "kwargs": {"widths": [4], "convs": 1}},
            "trainer": {"max_epochs": 2, "progress_bar": False, "deterministic": True,
                        "precision": "32-true", "early_stopping": {"enabled": False}},
            "evaluation": {"bootstrap_samples": 20}}
    members = {"narrow": {}, "wide": {"model": {"name": "convnet",
                                                 "kwargs": {"widths": [8], "convs": 1}}}}
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump({"study": "tiny", "base": base, "members": members}))
    out = root / "reference"
    api.study(path, out)
    return path, out


def assert_same_study(out: Path, reference: Path) -> None:
    assert_same_table(out / "summary.csv", reference / "summary.csv", drop=("train_seconds",))
    assert_same_table(out / "paired.csv", reference / "paired.csv")
    for member in ("narrow", "wide"):
        assert_same_table(out / "predictions" / f"{member}.csv",
                          reference / "predictions" / f"{member}.csv")
        pd.testing.assert_series_equal(val_losses(out / member), val_losses(reference / member))
        assert (out / member / "report.html").is_file()
    assert (out / "study.html").is_file()


def test_study_killed_in_the_second_member_continues(study_reference, tmp_path):
    path, reference = study_reference
    out, log = tmp_path / "study", tmp_path / "log.txt"
    process = Forked(("study", path, "--out", out), log)
    kill_when(process, lambda: (out / "wide" / "config.yaml").is_file(), log)
    assert (out / "narrow" / "study_member.json").is_file()
    assert not (out / "wide" / "metrics.json").exists()
    assert_nothing_truncated(out)
    stamp = (out / "narrow" / "checkpoints" / "best.ckpt").stat().st_mtime_ns

    assert run_cli("study", path, "--out", out) == 0
    assert (out / "narrow" / "checkpoints" / "best.ckpt").stat().st_mtime_ns == stamp
    assert_same_study(out, reference)


def test_study_killed_during_evaluation_finishes_the_member(study_reference, tmp_path):
    """A kill after a member's metrics.json but before its report and study_member.json:
    the rerun completes that member (without training it again)."""
    path, reference = study_reference
    out = tmp_path / "study"
    shutil.copytree(reference, out)
    for name in ("report.html", "study_member.json"):
        (out / "wide" / name).unlink()
    for name in ("summary.csv", "paired.csv", "study.html"):
        (out / name).unlink()
    stamp = (out / "wide" / "checkpoints" / "best.ckpt").stat().st_mtime_ns
    assert run_cli("study", path, "--out", out) == 0
    assert (out / "wide" / "checkpoints" / "best.ckpt").stat().st_mtime_ns == stamp
    assert json.loads((out / "wide" / "study_member.json").read_text())["parameters"] > 0
    assert_same_study(out, reference)
