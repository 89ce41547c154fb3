"""``medilab tune``: open (or continue) the study of a tune folder, run trials until N of them
are complete or pruned, then score the best trial once on the held-out test part and write
tune.csv / tune.html.

A tune folder holds ``tune.json`` (the request and the best trial), ``splits.csv`` (the one
split every trial uses), ``trials/NNNN`` (one run folder per trial), the Optuna journal file
``optuna.journal`` (the default storage; with ``--storage URL`` a copy of the remote study,
made when the tune finishes) and the page. The same command again continues a stopped or
killed tune; several processes (``--workers K``, or one ``worker_only`` process per SLURM task
on a shared ``--storage``) share the trials.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from medilab import run
from medilab.config import ExperimentConfig
from medilab.data.splits import load_splits, save_splits
from medilab.errors import InputFileError, MedilabError
from medilab.io.atomic import atomic_path, write_text
from medilab.tasks.registry import get_task_family
from medilab.tune.objective import Setup, run_trial, trial_dir
from medilab.tune.page import write_page
from medilab.tune.space import Space, decoded, parse_space, read_space
from medilab.tune.storage import (
    JOURNAL_FILE,
    claim_retry,
    counts,
    is_surplus,
    local_journal,
    mark_worker,
    open_storage,
    reap_stale,
)

TUNE_FILE = "tune.json"
SPLITS_FILE = "splits.csv"
WORKER_ENV = "MEDILAB_TUNE_WORKER"  # a --workers child: its request as JSON
POLL_S = 2.0  # how often a worker with nothing to start looks again
PRUNE_AFTER_TRIALS = 5  # median pruning starts once this many trials have finished
optuna.logging.set_verbosity(optuna.logging.WARNING)


def tune(
    config: ExperimentConfig | str | Path, out: str | Path, trials: int,
    space: str | Path | None = None, overrides: list[str] | None = None,
    timeout_s: float | None = None, workers: int = 1, storage: str | None = None,
    worker_only: bool = False, evaluate: Callable[[Path], Any] = run.evaluate,
) -> dict[str, Any]:
    """Run (or continue) the tune of ``config`` over ``space`` in ``out`` until ``trials``
    trials are complete or pruned (or ``timeout_s`` passed); ``workers`` local processes share
    the storage. Unless ``worker_only``, the best trial is then evaluated (``evaluate``) and
    the page written; returns tune.json's body."""
    if trials < 1 or workers < 1:
        raise MedilabError("--trials and --workers must be at least 1")
    out = Path(out)
    setup, request = prepare(config, out, trials, space, overrides, storage)
    deadline = time.time() + timeout_s if timeout_s else None
    children = [_start_worker(request, setup, storage, deadline, index)
                for index in range(1, workers)]
    try:
        failed = work(open_study(out, storage, setup.config), setup, trials, deadline, worker=0)
    finally:
        codes = [child.wait() for child in children]
    body = request if worker_only else finish(out, open_study(out, storage, setup.config),
                                              request, evaluate, storage)
    if failed:
        raise MedilabError(f"{out}: {failed} trials failed (tune.csv says why); fix the config "
                           "or the space and run again")
    if any(codes):
        raise MedilabError(f"{out}: {sum(c != 0 for c in codes)} of {workers - 1} worker "
                           "processes failed (their errors are above); run the same command "
                           "again to continue")
    return body


def prepare(config: ExperimentConfig | str | Path, out: Path, trials: int,
            space: str | Path | None, overrides: list[str] | None, storage: str | None
            ) -> tuple[Setup, dict[str, Any]]:
    """The trials' shared setup and tune.json's request; a folder holding another request
    (config, space or storage kind) is refused."""
    origin = str(config) if not isinstance(config, ExperimentConfig) else "config"
    base = run.resolve_config(config, overrides)
    searched = read_space(Path(space) if space else None, base, origin)
    request = {
        "experiment": base.experiment, "trials": trials,
        "monitor": base.trainer.monitor,
        "direction": "maximize" if base.trainer.monitor_mode == "max" else "minimize",
        "space": {key: value.model_dump() for key, value in searched.items()},
        "storage": "remote Optuna storage (copied to optuna.journal when the tune finishes)"
                   if storage else f"journal file {JOURNAL_FILE}",
    }
    base = base.model_copy(update={"tune": None})
    request["fingerprint"] = _fingerprint(base, request)
    existing = _read_tune_file(out)
    if existing and existing.get("fingerprint") != request["fingerprint"]:
        raise InputFileError(out / TUNE_FILE, "holds a tune of another config, space or "
                                              "storage; choose another --out")
    if existing:
        request = {**request, **{k: v for k, v in existing.items() if k not in request}}
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / TUNE_FILE, json.dumps(request, indent=2) + "\n")
    split = _shared_split(base, out)
    shared = base.model_copy(update={"data": base.data.model_copy(update={"splits_csv": split})})
    return Setup(shared, searched, out), request


def _fingerprint(base: ExperimentConfig, request: dict[str, Any]) -> str:
    body = {"config": base.model_dump(mode="json"), "space": request["space"],
            "storage": request["storage"]}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _read_tune_file(out: Path) -> dict[str, Any] | None:
    path = out / TUNE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise InputFileError(path, "is not valid JSON") from None


def _shared_split(config: ExperimentConfig, out: Path) -> Path:
    """``out/splits.csv``: the split of ``config`` (made once), so every trial selects on the
    same val part and the test part stays the same held-out one."""
    path = out / SPLITS_FILE
    if not path.is_file():
        given = load_splits(config.data.splits_csv) if config.data.splits_csv else None
        save_splits(get_task_family(config.task).build_datamodule(config, given).splits, path)
    return path


def make_pruner() -> optuna.pruners.BasePruner:
    """Median pruning: a trial whose val metric at an epoch (from the second on) is worse than
    the median of earlier trials at that epoch stops, once :data:`PRUNE_AFTER_TRIALS` ended."""
    return optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER_TRIALS, n_warmup_steps=1)


def open_study(out: Path, storage: str | None, config: ExperimentConfig) -> optuna.Study:
    """The tune's study (made on first use), named after the experiment."""
    direction = "maximize" if config.trainer.monitor_mode == "max" else "minimize"
    try:
        return optuna.create_study(storage=open_storage(out, storage), pruner=make_pruner(),
                                   study_name=config.experiment, direction=direction,
                                   load_if_exists=True)
    except (ValueError, ImportError) as exc:  # a bad URL, a missing database driver
        raise MedilabError(f"--storage: {exc}") from None


def work(study: optuna.Study, setup: Setup, trials: int, deadline: float | None,
         worker: int = 0) -> int:
    """Start trials until ``trials`` are complete or pruned (waiting while other workers' trials
    run), or until ``deadline``; trials of killed workers are marked failed and tried again.
    Returns 0, or the number of trials that failed to train once that reached ``trials``."""
    seed = setup.config.seed
    while True:
        reap_stale(study)
        all_trials = study.get_trials(deepcopy=False)
        tally = counts(all_trials)
        if tally["done"] >= trials or (deadline is not None and time.time() >= deadline):
            return 0
        if tally["failed"] >= trials:
            return tally["failed"]
        if tally["done"] + tally["running"] >= trials:
            time.sleep(POLL_S)  # other workers run the last trials; one may still fail
            continue
        study.sampler = optuna.samplers.TPESampler(
            seed=int(np.random.SeedSequence([seed, len(all_trials), worker]).generate_state(1)[0]))
        trial = study.ask()
        mark_worker(study, trial._trial_id)  # noqa: SLF001
        if is_surplus(study, trial.number, trials):
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            continue
        trial = claim_retry(study, trial)
        state = run_trial(study, trial, setup)
        print(f"trial {trial.number}: {state.name.lower()}", flush=True)


def _start_worker(request: dict[str, Any], setup: Setup, storage: str | None,
                  deadline: float | None, index: int) -> subprocess.Popen:
    """A ``python -m medilab.tune.worker`` process working on the same study (its request in
    the environment, so a storage URL with a password is not on the command line)."""
    body = {"config": setup.config.model_dump(mode="json"), "out": str(setup.out),
            "space": request["space"], "trials": request["trials"], "storage": storage,
            "deadline": deadline, "worker": index}
    env = {**os.environ, WORKER_ENV: json.dumps(body)}
    return subprocess.Popen([sys.executable, "-m", "medilab.tune.worker"], env=env)


def finish(out: Path, study: optuna.Study, request: dict[str, Any],
           evaluate: Callable[[Path], Any], storage: str | None) -> dict[str, Any]:
    """Evaluate the best complete trial once (again only when another trial became best),
    copy a remote study into ``out``, write tune.json and the page."""
    best = _best(out, study, request)
    previous = request.get("best") or {}
    if best and not (previous.get("number") == best["number"]
                     and previous.get("evaluated")):
        evaluate(out / best["run_dir"])
        best["evaluated"] = True
    elif best:
        best["evaluated"] = bool(previous.get("evaluated"))
    body = {**request, "best": best}
    write_text(out / TUNE_FILE, json.dumps(body, indent=2) + "\n")
    if storage:
        _snapshot(study, out)
    write_page(out, study, body, best)
    return body


def _best(out: Path, study: optuna.Study, request: dict[str, Any]) -> dict[str, Any] | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    trial = study.best_trial
    params = decoded(space_of(request), trial.params)
    return {"number": trial.number, "value": trial.value, "params": params,
            "monitor": request["monitor"],
            "run_dir": str(trial_dir(out, trial.number).relative_to(out))}


def _snapshot(study: optuna.Study, out: Path) -> None:
    """A copy of a remote study in ``out/optuna.journal`` (what ``medilab report`` reads)."""
    with atomic_path(out / JOURNAL_FILE) as tmp:
        tmp.unlink()
        target = optuna.storages.journal.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp)))
        optuna.copy_study(from_study_name=study.study_name, from_storage=study._storage,  # noqa: SLF001
                          to_storage=target)


def rebuild(out: Path) -> Path:
    """tune.csv and tune.html again from the folder's files (``medilab report DIR``)."""
    request = _read_tune_file(out)
    storage = local_journal(out)
    if request is None or storage is None:
        raise InputFileError(out, f"not a tune folder (needs {TUNE_FILE} and {JOURNAL_FILE})")
    study = optuna.load_study(study_name=request["experiment"], storage=storage)
    return write_page(out, study, request, request.get("best"))


def space_of(request: dict[str, Any]) -> Space:
    """The search space saved in a request (tune.json, a worker's environment)."""
    return parse_space(request["space"], TUNE_FILE)
