"""The end of a tune: the best complete trial scored once (its evaluation covers the
held-out test part; with ``--cv`` its parameters are first trained again on the whole split,
into ``best/NNNN``), a remote study copied into the folder, tune.json and the page; and the
page again from the folder's files (``medilab report DIR``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from medilab import run
from medilab.errors import InputFileError
from medilab.io.atomic import atomic_path, write_text
from medilab.tune.cv import fold_std
from medilab.tune.folder import TUNE_FILE, read_tune_file, space_of
from medilab.tune.objective import Setup, trial_dir
from medilab.tune.page import write_page
from medilab.tune.space import decoded, override
from medilab.tune.storage import JOURNAL_FILE, local_journal

BEST_DIR = "best"  # --cv: the best parameters trained on the whole split, best/NNNN


def finish(out: Path, study: optuna.Study, request: dict[str, Any],
           evaluate: Callable[[Path], Any], storage: str | None,
           setup: Setup) -> dict[str, Any]:
    """Evaluate the best complete trial once (again only when another trial became best),
    copy a remote study into ``out``, write tune.json and the page. With ``--cv`` the best
    trial's parameters are first trained on the tune's whole split (``splits.csv``: its train
    and val parts, the test part held out) into ``best/NNNN``, which is what is evaluated; a
    stopped retraining resumes (or starts again) on the next run of the command."""
    best = _best(out, study, request)
    previous = request.get("best") or {}
    if best and not (previous.get("number") == best["number"]
                     and previous.get("evaluated")):
        scored = out / best["held_out_run_dir"]
        if request.get("cv"):
            config = run.resolve_config(
                setup.config, [override(k, v) for k, v in best["params"].items()])
            run.train_to_finish(config, scored)
        evaluate(scored)
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
    run_dir = str(trial_dir(out, trial.number).relative_to(out))
    best = {"number": trial.number, "value": trial.value, "params": params,
            "monitor": request["monitor"], "run_dir": run_dir, "held_out_run_dir": run_dir}
    folds = request.get("cv")
    if folds:
        values = [float(v) for v in trial.user_attrs.get("fold_values", [])]
        best.update({"selection": f"mean {request['monitor']} over {folds} folds",
                     "folds": folds, "fold_values": values,
                     "std": fold_std(values),
                     "held_out_run_dir": f"{BEST_DIR}/{trial.number:04d}"})
    return best


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
    request = read_tune_file(out)
    storage = local_journal(out)
    if request is None or storage is None:
        raise InputFileError(out, f"not a tune folder (needs {TUNE_FILE} and {JOURNAL_FILE})")
    study = optuna.load_study(study_name=request["experiment"], storage=storage)
    return write_page(out, study, request, request.get("best"))
