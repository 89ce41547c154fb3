"""The run folder's layout: file names, and reading / writing what a run saves.

The engine, ensembles, cross-validation and studies all read and write run folders through
this module, never through each other::

    config.yaml  splits.csv  checkpoints/{best,last}.ckpt  checkpoints/model.json
    metrics.csv  metrics.json  fitted.json  predictions_<split>.csv  plots/  report.html
    status.json

``fitted.json`` holds what evaluation fitted on val (temperature, binary threshold, late-fusion
weights) for the checkpoint it evaluated: predict, export, ensembles, explain and reports use it,
so the deployed model is the evaluated one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from medilab.config import (
    ExperimentConfig,
    apply_overrides,
    config_to_yaml,
    read_yaml,
    validate_config,
)
from medilab.data.splits import load_splits
from medilab.errors import InputFileError, MedilabError
from medilab.io.atomic import write_text

CONFIG_FILE = "config.yaml"
SPLITS_FILE = "splits.csv"
MODEL_ARGS_FILE = "checkpoints/model.json"
CURVES_FILE = "metrics.csv"
RESUME_CURVES_FILE = ".metrics_before_resume.csv"  # metrics.csv's rows while a resume runs
METRICS_FILE = "metrics.json"
ENSEMBLE_FILE = "ensemble.json"
FITTED_FILE = "fitted.json"
STATUS_FILE = "status.json"
REPORT_FILE = "report.html"
PRECISION_PROBE_FILE = "precision_probe.json"  # trainer.precision: auto's timed answers


def default_run_dir(config: ExperimentConfig, root: Path = Path("runs")) -> Path:
    """``runs/<experiment>/<timestamp>`` (a suffix when two runs start in the same second)."""
    stamp = dt.datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    candidate = root / config.experiment / stamp
    number = 1
    while candidate.exists():
        number += 1
        candidate = root / config.experiment / f"{stamp}-{number}"
    return candidate


def checkpoint_path(run_dir: Path, checkpoint: str = "best") -> Path:
    """``checkpoints/<checkpoint>.ckpt`` of a run."""
    return run_dir / "checkpoints" / f"{checkpoint}.ckpt"


def load_run_config(run_dir: Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """The resolved config saved in a run folder (with ``overrides`` applied)."""
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise InputFileError(run_dir, "run folder not found")
    raw = read_yaml(path)
    return validate_config(apply_overrides(raw, overrides or []), str(path))


GROUP_SET_FIELDS = ("experiment", "data.splits_csv")  # set per run by a study / crossval


def config_changes(run_dir: Path, config: ExperimentConfig, asker: str) -> list[str]:
    """The fields on which the run's saved config.yaml differs from ``config``, each as
    ``"key=SAVED, ASKER NOW"``; empty when they agree or the run has no config.yaml yet. The
    fields a study or cross-validation sets per run (``GROUP_SET_FIELDS``) are ignored."""
    if not (run_dir / CONFIG_FILE).is_file():
        return []
    saved = _flatten(load_run_config(run_dir).model_dump(mode="json"))
    requested = _flatten(config.model_dump(mode="json"))
    return [f"{key}={saved.get(key)!r}, {asker} {requested.get(key)!r}".replace("'", "")
            for key in sorted(set(saved) | set(requested))
            if key not in GROUP_SET_FIELDS and saved.get(key) != requested.get(key)]


def _flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists kept as values)."""
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def load_run_splits(run_dir: Path) -> pd.DataFrame:
    """The run's ``splits.csv``."""
    return load_splits(run_dir / SPLITS_FILE)


def read_model_args(run_dir: Path) -> dict[str, Any]:
    """The resolved model arguments the run was trained with (checkpoints/model.json)."""
    path = run_dir / MODEL_ARGS_FILE
    if not path.is_file():
        raise InputFileError(path, "missing: is this a medilab run folder?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))["kwargs"]
    except (ValueError, KeyError, TypeError):
        raise InputFileError(path, "not a model.json written by medilab") from None


def write_run_files(
    run_dir: Path, config: ExperimentConfig, splits: pd.DataFrame, model_args: dict
) -> None:
    """config.yaml, splits.csv and checkpoints/model.json: what a run needs before training."""
    (run_dir / "plots").mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_text(run_dir / CONFIG_FILE, config_to_yaml(config))
    write_text(run_dir / SPLITS_FILE, splits.to_csv(index=False))
    saved = {"name": config.model.name, "kwargs": model_args}
    write_text(run_dir / MODEL_ARGS_FILE, json.dumps(saved, indent=2) + "\n")


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> Path:
    """metrics.json (atomically)."""
    return write_text(run_dir / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")


SELECTION_ROLE = ("selection set: chose the checkpoint and fitted the threshold, temperature "
                  "and fusion weights (in-sample for what was fitted on it)")
HELD_OUT_ROLE = "held out: scored once with what val chose; nothing was selected on it"


def split_roles(splits: list[str]) -> dict[str, Any]:
    """metrics.json's ``roles`` (what each scored split is) and ``headline`` (the split whose
    figures a paper quotes: ``test`` when held out, else ``val``, marked as not held out)."""
    roles = {s: SELECTION_ROLE if s == "val" else HELD_OUT_ROLE for s in splits}
    headline = "test" if "test" in splits else ("val" if "val" in splits else
                                                 (splits[0] if splits else None))
    out: dict[str, Any] = {"roles": roles, "headline": headline}
    if headline == "val":
        out["headline_note"] = ("no held-out test part: val figures are optimistic (set "
                                "data.test_fraction to hold one out)")
    return out


def headline_split(metrics: dict[str, Any]) -> str | None:
    """The split to quote from a metrics.json body (``headline``, else test, else val)."""
    splits = list(metrics.get("splits") or {})
    return metrics.get("headline") or split_roles(splits)["headline"]


def headline_metrics(metrics: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(split, its ``{metric: {value, low, high}}``) of the figures to quote from a metrics.json
    body: the held-out test part when scored, else val (the selection set)."""
    split = headline_split(metrics) or "val"
    return split, (metrics.get("splits") or {}).get(split, {})


def role_label(split: str) -> str:
    """A short label of what a scored split is, for tables and console lines."""
    return ("selection set, in-sample for what was fitted on it" if split == "val"
            else "held out")


def ordered_splits(metrics: dict[str, Any]) -> list[str]:
    """The scored splits of a metrics.json body, the headline one first."""
    splits = list(metrics.get("splits") or {})
    first = headline_split(metrics)
    return sorted(splits, key=lambda s: s != first)


def write_fitted(run_dir: Path, checkpoint: str, state: dict[str, Any]) -> Path:
    """fitted.json: what evaluation of ``checkpoint`` fitted on val (atomically)."""
    body = {"checkpoint": checkpoint, "fitted_on": "val", **state}
    return write_text(run_dir / FITTED_FILE, json.dumps(body, indent=2) + "\n")


def clear_fitted(run_dir: Path) -> None:
    """Remove fitted.json: training (or resuming) changes the checkpoints it was fitted for."""
    (run_dir / FITTED_FILE).unlink(missing_ok=True)


def read_fitted(run_dir: Path, checkpoint: str) -> dict[str, Any] | None:
    """The fitted.json state for ``checkpoint``, or None when the run has none (not yet
    evaluated) or it belongs to another checkpoint."""
    path = run_dir / FITTED_FILE
    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise InputFileError(path, "not a fitted.json written by medilab") from None
    if not isinstance(body, dict):
        raise InputFileError(path, "not a fitted.json written by medilab")
    if body.get("checkpoint") != checkpoint:
        return None
    return body


def read_logged_rows(run_dir: Path) -> pd.DataFrame | None:
    """metrics.csv as Lightning's CSV logger wrote it (sparse rows, one per logging hook), or
    None; :func:`medilab.reports.runfiles.read_curves` makes it one row per epoch."""
    path = run_dir / CURVES_FILE
    return pd.read_csv(path) if path.is_file() and path.stat().st_size else None


def merge_curves(earlier: pd.DataFrame, latest: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``earlier`` from before ``latest``'s first epoch, then ``latest``."""
    if latest.empty:
        return earlier
    if "epoch" not in latest.columns:
        return latest
    first_new_epoch = latest["epoch"].min()
    kept = earlier[earlier["epoch"] < first_new_epoch] if "epoch" in earlier else earlier
    if "step" in earlier and "step" in latest and "epoch" in earlier:
        # rows without an epoch (the learning-rate monitor's) are placed by their step
        undated = earlier["epoch"].isna() & (earlier["step"] < latest["step"].min())
        kept = earlier[(earlier["epoch"] < first_new_epoch) | undated]
    return pd.concat([kept, latest], ignore_index=True)


def curves_to_resume(run_dir: Path) -> pd.DataFrame | None:
    """The curves of the epochs trained so far, also kept in ``.metrics_before_resume.csv``
    until :func:`prepend_curves` puts them back: Lightning deletes metrics.csv when a resumed
    fit starts, so a kill before that fit ends would otherwise lose them."""
    saved_path = run_dir / RESUME_CURVES_FILE
    saved = pd.read_csv(saved_path) if saved_path.is_file() and saved_path.stat().st_size \
        else None
    current = read_logged_rows(run_dir)
    if saved is None or current is None:
        earlier = current if saved is None else saved
    else:  # a resumed fit was stopped too: its epochs follow the saved ones
        earlier = merge_curves(saved, current)
    if earlier is not None:
        write_text(saved_path, earlier.to_csv(index=False))
    return earlier


def prepend_curves(run_dir: Path, earlier: pd.DataFrame) -> None:
    """Lightning's CSV logger starts metrics.csv afresh on resume: put the earlier epochs back
    (all of them when a finished run was resumed and logged nothing new)."""
    latest = read_logged_rows(run_dir)
    merged = earlier if latest is None else merge_curves(earlier, latest)
    write_text(run_dir / CURVES_FILE, merged.to_csv(index=False))
    (run_dir / RESUME_CURVES_FILE).unlink(missing_ok=True)


def write_status(run_dir: Path, state: str, **details: Any) -> None:
    """status.json: ``running`` / ``finished`` / ``failed`` (with ``reason``) / ``interrupted``."""
    body = {"state": state, "updated": dt.datetime.now().isoformat(timespec="seconds"),
            **details}
    write_text(run_dir / STATUS_FILE, json.dumps(body, indent=2) + "\n")


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The run's status.json, or None for runs written before it existed."""
    path = run_dir / STATUS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


LOCK_FILE = "lock"


def acquire_lock(run_dir: Path) -> Path:
    """Create ``run_dir/lock`` (pid and host of this process) atomically, so that a second
    training into the same folder is refused. A lock left by a process that is gone (same host,
    pid not alive) is taken over; a live one raises ``MedilabError`` naming its holder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    return take_lock(path, lambda holder: (
        f"{run_dir}: another training (pid {holder['pid']} on {holder['host']}) is writing "
        f"this run folder; wait for it or remove {path} if it is gone"))


def take_lock(path: Path, busy: Callable[[dict[str, Any]], str]) -> Path:
    """Create the lock file ``path`` (pid and host of this process) atomically. A lock of a
    process that is gone (same host, pid not alive) is taken over; a live one raises
    ``MedilabError(busy(holder))``."""
    body = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n"
    for _ in range(3):
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = lock_holder(path)
            if holder is not None:
                raise MedilabError(busy(holder)) from None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(body)
        return path
    raise MedilabError(f"{path}: could not take the lock (another process races)")


def drop_lock(path: Path) -> None:
    """Remove the lock file ``path`` when this process holds it."""
    holder = _read_lock(path)
    if holder is not None and holder.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def lock_holder(path: Path) -> dict[str, Any] | None:
    """The live holder (pid, host) of the lock file ``path``, or None when it is missing,
    unreadable or left by a process that is gone."""
    holder = _read_lock(path)
    return holder if holder is not None and _holder_alive(holder) else None


def release_lock(run_dir: Path) -> None:
    """Remove ``run_dir/lock`` when this process holds it."""
    drop_lock(run_dir / LOCK_FILE)


@contextlib.contextmanager
def job_lock(path: Path, what: str) -> Iterator[Path]:
    """Hold the lock file ``path`` while one process trains and evaluates ``what`` (a study
    member, a fold) of a group folder; a second process on the same ``what`` is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    take_lock(path, lambda holder: (
        f"{what} is being trained by pid {holder['pid']} on {holder['host']}; wait for it, or "
        f"remove {path} if that process is gone"))
    try:
        yield path
    finally:
        drop_lock(path)


def progress_line(run_dir: Path, lock: Path | None = None) -> str:
    """Where an unfinished run of a group folder stands, in a few words: ``in progress (pid P on
    HOST)`` while ``lock`` is held, else ``not started``, ``trained, not evaluated`` or its
    training state from status.json."""
    holder = lock_holder(lock) if lock is not None else None
    if holder is not None:
        return f"in progress (pid {holder['pid']} on {holder['host']})"
    status = read_status(run_dir)
    if status is None:
        return "not started"
    state = status.get("state")
    if state == "finished":
        return "trained, not evaluated"
    if state == "running":
        return "stopped while training"
    return f"training {state}"


def _read_lock(path: Path) -> dict[str, Any] | None:
    """The lock's holder, or None for a missing or unreadable lock (treated as stale)."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
        return None
    return holder


def _holder_alive(holder: dict[str, Any]) -> bool:
    """Whether the lock's process still runs; on another host it is assumed to."""
    if holder.get("host") != socket.gethostname():
        return True
    if holder["pid"] == os.getpid():
        return True
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return _not_zombie(holder["pid"])


def _not_zombie(pid: int) -> bool:
    """False for a process that has exited but not been reaped (Linux /proc); else True."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True
    return fields[0] != "Z"


UNFINISHED_STATES = ("running", "interrupted", "failed")


def unfinished_notice(run_dir: Path) -> str | None:
    """One line saying that the run's training did not finish (status.json ``running``,
    ``interrupted`` or ``failed``), or None for a finished run or one without status.json."""
    status = read_status(run_dir) or {}
    state = status.get("state")
    if state not in UNFINISHED_STATES:
        return None
    reason = status.get("reason")
    detail = f" ({reason})" if isinstance(reason, str) and reason else ""
    return (f"{run_dir}: training is {state}{detail}; its results are from an unfinished run"
            .replace("\n", " "))


def warn_if_unfinished(run_dir: Path) -> str | None:
    """``warnings.warn`` the ``unfinished_notice`` of a run (if any) and return it."""
    import warnings

    notice = unfinished_notice(run_dir)
    if notice:
        warnings.warn(notice, UserWarning, stacklevel=3)
    return notice
