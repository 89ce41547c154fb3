"""``medilab tune``: open (or continue) the study of a tune folder, run trials until N of them
are complete or pruned, then score the best trial once on the held-out test part and write
tune.csv / tune.html.

A tune folder holds ``tune.json`` (the request and the best trial), ``splits.csv`` (the one
split every trial uses), ``trials/NNNN`` (one run folder per trial; with ``--cv K`` one run
folder per fold, ``trials/NNNN/fold<k>``, and the best parameters trained again on the whole
split into ``best/NNNN``, see :mod:`medilab.tune.cv`), the Optuna journal file
``optuna.journal`` (the default storage; with ``--storage URL`` a copy of the remote study,
made when the tune finishes) and the page. The same command again continues a stopped or
killed tune; several processes (``--workers K``, or one ``worker_only`` process per SLURM task
on a shared ``--storage``) share the trials.
"""

from __future__ import annotations

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
from medilab.errors import MedilabError
from medilab.runfolder import read_status, write_status
from medilab.tune.folder import open_study, prepare
from medilab.tune.objective import Setup, run_trial, trial_dir
from medilab.tune.results import finish
from medilab.tune.storage import claim_retry, counts, is_surplus, mark_worker, reap_stale

WORKER_ENV = "MEDILAB_TUNE_WORKER"  # a --workers child: its request as JSON
POLL_S = 2.0  # how often a worker with nothing to start looks again


def tune(
    config: ExperimentConfig | str | Path, out: str | Path, trials: int,
    space: str | Path | None = None, overrides: list[str] | None = None,
    timeout_s: float | None = None, workers: int = 1, storage: str | None = None,
    worker_only: bool = False, evaluate: Callable[[Path], Any] = run.evaluate,
    cv: int | None = None,
) -> dict[str, Any]:
    """Run (or continue) the tune of ``config`` over ``space`` in ``out`` until ``trials``
    trials are complete or pruned (or ``timeout_s`` passed); ``workers`` local processes share
    the storage. ``cv`` K: each trial is scored by K-fold cross-validation on the non-test
    samples (:mod:`medilab.tune.cv`; None keeps the folder's own). Unless ``worker_only``, the
    best trial is then evaluated (``evaluate``; with ``cv`` first trained again on the whole
    split) and the page written; returns tune.json's body."""
    if trials < 1 or workers < 1:
        raise MedilabError("--trials and --workers must be at least 1")
    out = Path(out)
    setup, request = prepare(config, out, trials, space, overrides, storage, cv)
    cv = request.get("cv")
    deadline = time.time() + timeout_s if timeout_s else None
    children = [_start_worker(request, setup, storage, deadline, index)
                for index in range(1, workers)]
    try:
        failed = work(open_study(out, storage, setup.config, cv), setup, trials, deadline,
                      worker=0)
    finally:
        codes = [child.wait() for child in children]
    body = request if worker_only else finish(out, open_study(out, storage, setup.config, cv),
                                              request, evaluate, storage, setup)
    if failed:
        raise MedilabError(f"{out}: {failed} trials failed (tune.csv says why); fix the config "
                           "or the space and run again")
    if any(codes):
        raise MedilabError(f"{out}: {sum(c != 0 for c in codes)} of {workers - 1} worker "
                           "processes failed (their errors are above); run the same command "
                           "again to continue")
    return body


def work(study: optuna.Study, setup: Setup, trials: int, deadline: float | None,
         worker: int = 0) -> int:
    """Start trials until ``trials`` are complete or pruned (waiting while other workers' trials
    run), or until ``deadline``; trials of killed workers are marked failed and tried again.
    Returns 0, or the number of trials that failed to train once that reached ``trials``."""
    seed = setup.config.seed
    while True:
        for number in reap_stale(study):
            _mark_interrupted(trial_dir(setup.out, number))
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
            "deadline": deadline, "worker": index, "cv": request.get("cv"),
            "fold_splits": [str(path) for path in setup.fold_splits]}
    env = {**os.environ, WORKER_ENV: json.dumps(body)}
    return subprocess.Popen([sys.executable, "-m", "medilab.tune.worker"], env=env)


def _mark_interrupted(run_dir: Path) -> None:
    """status.json of a trial (or, with ``--cv``, of its fold runs) whose worker is gone:
    interrupted, not running."""
    for folder in (run_dir, *sorted(run_dir.glob("fold*"))):
        if (read_status(folder) or {}).get("state") == "running":
            write_status(folder, "interrupted", reason="its tune worker stopped or was killed; "
                         "a later trial tries its parameters again")
