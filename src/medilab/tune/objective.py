"""One trial of ``medilab tune``: its parameters as config overrides, an ordinary run folder
trained with Optuna's Lightning pruning callback, and its value told to the study (the best
value of the config's monitored val metric). With ``--cv K`` (:mod:`medilab.tune.cv`) the trial
is K fold runs under its folder instead and its value their mean."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from medilab import run
from medilab.config import ExperimentConfig
from medilab.errors import MedilabError, TrainingFailedError
from medilab.runfolder import read_status, write_status
from medilab.tune.cv import train_folds
from medilab.tune.space import Space, override, suggest
from medilab.tune.storage import heartbeat

TRIALS_DIR = "trials"


@dataclass(frozen=True)
class Setup:
    """What every trial shares: the base config (the tune's split, no ``tune:`` section), the
    search space, the tune folder and, with ``--cv K``, the K folds' splits tables."""

    config: ExperimentConfig
    space: Space
    out: Path
    fold_splits: tuple[Path, ...] = ()


def trial_dir(out: Path, number: int) -> Path:
    """The run folder of trial ``number``."""
    return out / TRIALS_DIR / f"{number:04d}"


def run_trial(study: optuna.Study, trial: optuna.Trial, setup: Setup) -> TrialState:
    """Train ``trial`` into its run folder and tell the study how it ended. A training that
    fails (diverged, crashed) fails only the trial; bad input fails the trial and is raised (no
    other trial could do better); an interruption leaves the trial to be tried again."""
    params = {key: suggest(trial, key, distribution)
              for key, distribution in setup.space.items()}
    run_dir = trial_dir(setup.out, trial.number)
    trial.set_user_attr("run_dir", str(run_dir.relative_to(setup.out)))
    try:
        config = run.resolve_config(setup.config, [override(k, v) for k, v in params.items()])
        with heartbeat(study, trial._trial_id):  # noqa: SLF001
            if setup.fold_splits:
                fold_values = train_folds(trial, config, run_dir, setup.fold_splits)
            else:
                pruning = PyTorchLightningPruningCallback(trial, monitor=config.trainer.monitor)
                run.train(config, run_dir=run_dir, callbacks=[pruning])
    except optuna.TrialPruned as exc:  # --cv: the running mean over folds was pruned
        trial.set_user_attr("pruned", str(exc))
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    except TrainingFailedError as exc:
        if isinstance(exc.__cause__, optuna.TrialPruned):
            write_status(run_dir, "pruned", reason=str(exc.__cause__))
            study.tell(trial, state=TrialState.PRUNED)
            return TrialState.PRUNED
        return _fail(study, trial, str(exc))
    except MedilabError as exc:
        _fail(study, trial, str(exc))
        raise
    except BaseException:
        trial.set_user_attr("stale", True)  # interrupted: the next trial tries it again
        study.tell(trial, state=TrialState.FAIL)
        raise
    if setup.fold_splits:
        study.tell(trial, float(sum(fold_values) / len(fold_values)))
        return TrialState.COMPLETE
    training = (read_status(run_dir) or {}).get("training", {})
    value = training.get("best_score")
    if not isinstance(value, float) or not math.isfinite(value):
        return _fail(study, trial, f"{run_dir}: no finite {config.trainer.monitor} was logged")
    study.tell(trial, value)
    return TrialState.COMPLETE


def _fail(study: optuna.Study, trial: optuna.Trial, reason: str) -> TrialState:
    trial.set_user_attr("error", reason.splitlines()[0] if reason else "failed")
    study.tell(trial, state=TrialState.FAIL)
    return TrialState.FAIL
