"""Studies: several models (members) trained and evaluated the same way, compared on one page.

A study file names a base experiment and its members (Lab 3: single slice, early fusion, late
fusion, 3D CNN)::

    study: lab3_adrenal
    base: lab3_base.yaml          # an experiment file (relative to the study file) or a mapping
    overrides: [trainer.max_epochs=20]   # for every member
    members:
      single: {model: {name: fusion_single, kwargs: {backbone: convnet}}}
      3d: {model: {name: cnn3d}}

Every member gets the same seed, data and split (``OUT/splits.csv``, the first member's)
and its own ordinary run folder ``OUT/<member>``. OUT then holds ``predictions/<member>.csv``,
``summary.csv`` (member, split, its role, metrics with intervals, n, training seconds,
parameters; the held-out ``test`` rows first when the members have a test part),
``paired.csv`` (paired bootstrap of AUROC differences between members on the same samples, on
the held-out test part when present, else on val) and ``study.html``. Running the same command
again keeps finished members (``study_member.json`` is written last), evaluates a member whose
training finished, resumes one with a ``last.ckpt`` and starts the others again, so a stopped
(even killed) study ends as an uninterrupted one. A member folder whose saved config differs
from what the study now asks (another ``-o trainer.max_epochs``, an edited study file) is
refused before anything trains, naming the field, or trained again from scratch with
``force=True``; members that ran at different precisions or epoch budgets are warned about and
named on the page.

``train_member`` trains one member per process (a job array on a shared file system; each member
under the lock ``OUT/.<member>.lock``); the shared ``splits.csv`` is made up front from the
first member's config by whichever process needs it first. ``run_study`` then keeps the finished
members and assembles the page (``assemble_only``: training nothing, refusing with the list of
missing members).
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from medilab import run
from medilab.config import ExperimentConfig, apply_overrides, read_yaml, validate_config
from medilab.errors import ConfigError, InputFileError, MedilabError
from medilab.io.atomic import write_bytes, write_csv, write_once, write_text
from medilab.models.registry import check_model_kwargs
from medilab.runfolder import (
    CONFIG_FILE,
    METRICS_FILE,
    SPLITS_FILE,
    checkpoint_path,
    config_changes,
    job_lock,
    load_run_config,
    lock_holder,
    ordered_splits,
    progress_line,
    read_status,
    role_label,
)
from medilab.tasks.bootstrap import resample_indices
from medilab.tasks.registry import find_task_family

SUMMARY_FILE = "summary.csv"
PAIRED_FILE = "paired.csv"
MEMBER_FILE = "study_member.json"
STUDY_FILE = "study.json"  # the study's name and member order, for rebuilding its page
DEFAULT_METRICS = ("accuracy", "f1_macro", "auroc")  # members of an unknown task


def load_study(path: str | Path, overrides: list[str] | None = None
               ) -> tuple[str, dict[str, ExperimentConfig]]:
    """The study's name and one validated config per member (in file order). A member that
    fails validation stops the study before any training, naming the member."""
    path = Path(path)
    raw = read_yaml(path)
    unknown = set(raw) - {"study", "base", "overrides", "members"}
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r} (a study has study, "
                          "base, overrides, members)")
    name = str(raw.get("study") or path.stem)
    base = raw.get("base") or {}
    if isinstance(base, str):
        base = read_yaml(path.parent / base)
    if not isinstance(base, dict):
        raise ConfigError(f"{path}: 'base' must be an experiment file name or a mapping")
    members = raw.get("members")
    if not isinstance(members, dict) or not members:
        raise ConfigError(f"{path}: 'members' must map member names to config changes")
    shared = [*(raw.get("overrides") or []), *(overrides or [])]
    configs = {}
    for member, change in members.items():
        if not isinstance(change, dict):
            raise ConfigError(f"{path}: member {member!r} must be a mapping of config changes")
        merged = _merge(base, {k: v for k, v in change.items() if k != "model"})
        if "model" in change:  # a member's model replaces the base's (kwargs belong to it)
            merged["model"] = change["model"]
        merged["experiment"] = f"{name}_{member}"
        try:
            configs[str(member)] = validate_config(apply_overrides(merged, shared),
                                                   f"{path} member {member!r}")
        except ConfigError as exc:
            raise ConfigError(str(exc)) from None
        model = configs[str(member)].model
        try:  # a typo in a member's model kwargs stops the study before any training
            check_model_kwargs(model.name, model.kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{path} member {member!r}: {exc}") from None
    return name, configs


def run_study(path: str | Path, out: str | Path, overrides: list[str] | None = None,
              evaluate: Any = run.evaluate, force: bool = False,
              assemble_only: bool = False) -> pd.DataFrame:
    """Train and evaluate every member not yet finished into ``out``; write and return the
    summary table. A member folder trained with another config is refused (``force``: trained
    again). With ``assemble_only`` nothing trains: the summary is made from finished members
    (trained by ``train_member`` in other processes), or a one-line error lists the missing."""
    out = Path(out)
    name, configs = load_study(path, overrides)
    if assemble_only:
        _changed_or_refuse(out, configs, force=False)
        missing = [f"{m} ({progress_line(out / m, member_lock(out, m))})"
                   for m in configs if not member_finished(out, m)]
        if missing:
            raise MedilabError(
                f"{out}: cannot assemble, {len(missing)} of {len(configs)} members not "
                f"finished: {', '.join(missing)}; train them (`medilab study … --member NAME`) "
                "or run the command without --assemble-only")
        return summarize(name, out, list(configs))
    changed = _changed_or_refuse(out, configs, force)
    _write_study_file(out, name, configs)
    if any(_splits_changed(fields) for fields in changed.values()):
        shared_splits(out, next(iter(configs.values())), renew=True)
    elsewhere = []
    for member in configs:
        holder = lock_holder(member_lock(out, member))
        if holder is not None and not member_finished(out, member):
            elsewhere.append(f"{member} (pid {holder['pid']} on {holder['host']})")
            continue  # another process trains it: do the others meanwhile
        _finish_member(out, member, configs, changed.get(member), evaluate)
    if elsewhere:
        raise MedilabError(
            f"{out}: not assembled, {len(elsewhere)} member(s) still being trained by other "
            f"processes: {', '.join(elsewhere)}; run the command again once they are done")
    return summarize(name, out, list(configs))


def train_member(path: str | Path, out: str | Path, member: str,
                 overrides: list[str] | None = None, evaluate: Any = run.evaluate,
                 force: bool = False) -> Path:
    """Train and evaluate one member (by name, or by its index in the study file, as a job
    array's task id gives it) into ``out/<member>`` and return its folder; other processes
    train the other members into the same ``out``. No study page: the plain command (or
    ``run_study(..., assemble_only=True)``) assembles it once every member is finished."""
    out = Path(out)
    name, configs = load_study(path, overrides)
    member = member_name(member, configs, Path(path))
    changed = _changed_or_refuse(out, {member: configs[member]}, force)
    _write_study_file(out, name, configs)
    if _splits_changed(changed.get(member, [])):
        shared_splits(out, next(iter(configs.values())), renew=True)
    _finish_member(out, member, configs, changed.get(member), evaluate)
    return out / member


def member_name(member: str, configs: dict[str, ExperimentConfig], path: Path) -> str:
    """``member`` as a member name: a name of the study, or its index (0, 1, …) in the file."""
    names = list(configs)
    if member in configs:
        return member
    if member.isdigit() and int(member) < len(names):
        return names[int(member)]
    raise ConfigError(f"{path}: --member {member!r} is not a member of the study (members: "
                      f"{', '.join(names)}; or their index 0 to {len(names) - 1})")


def member_finished(out: Path, member: str) -> bool:
    """Whether the member is trained and evaluated (study_member.json is written last)."""
    return (out / member / MEMBER_FILE).is_file() and (out / member / METRICS_FILE).is_file()


def member_lock(out: Path, member: str) -> Path:
    """The lock file held by the process training and evaluating ``member``."""
    return out / f".{member}.lock"


def shared_splits(out: Path, config: ExperimentConfig, renew: bool = False) -> Path:
    """``out/splits.csv``, the split every member trains on: the one ``config`` (the first
    member's) makes. Written once by whichever process needs it first (all read that file);
    ``renew`` replaces it (atomically) after the study's data or seed changed."""
    path = out / SPLITS_FILE
    if path.is_file() and not renew:
        return path
    text = run.planned_splits(config).to_csv(index=False).encode("utf-8")
    if renew:
        write_bytes(path, text)
    else:
        write_once(path, text)
    return path


def _changed_or_refuse(out: Path, configs: dict[str, ExperimentConfig],
                       force: bool) -> dict[str, list[str]]:
    """The members of ``configs`` whose folder was trained with another config; refused,
    naming the first field, unless ``force``."""
    changed = changed_members(out, configs)
    if changed and not force:
        member, fields = next(iter(changed.items()))
        others = f" (and {len(changed) - 1} more member(s))" if len(changed) > 1 else ""
        raise ConfigError(
            f"{out / member / CONFIG_FILE}: member {member!r} was trained with "
            f"{fields[0]}{others}; rerun with --force to train the changed members again, "
            "or choose another --out")
    return changed


def _splits_changed(fields: list[str]) -> bool:
    return any(f.startswith(("data.", "seed=")) for f in fields)


def _write_study_file(out: Path, name: str, configs: dict[str, ExperimentConfig]) -> None:
    """study.json (the study's name and member order; the same from every process)."""
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / STUDY_FILE, json.dumps({"study": name, "members": list(configs)},
                                            indent=2) + "\n")


def _finish_member(out: Path, member: str, configs: dict[str, ExperimentConfig],
                   changed: list[str] | None, evaluate: Any) -> None:
    """Train (or resume) and evaluate one member unless it is finished, holding its lock;
    a member trained with another config (``changed``: its fields) is removed first."""
    member_dir = out / member
    with job_lock(member_lock(out, member), f"{out}: member {member!r}"):
        if changed:
            warnings.warn(f"{member_dir}: config changed ({'; '.join(changed)}); training the "
                          "member again", UserWarning, stacklevel=3)
            shutil.rmtree(member_dir)
        if member_finished(out, member):
            return
        splits = shared_splits(out, next(iter(configs.values())))
        start = time.perf_counter()
        config = configs[member]  # every member trains on the first member's split
        config = config.model_copy(update={
            "data": config.data.model_copy(update={"splits_csv": splits})})
        run.train_to_finish(config, member_dir)
        seconds = time.perf_counter() - start
        evaluate(member_dir)
        write_text(member_dir / MEMBER_FILE, json.dumps(
            {"member": member, "train_seconds": round(seconds, 1),
             "parameters": _parameters(member_dir)}, indent=2) + "\n")


def changed_members(out: Path, configs: dict[str, ExperimentConfig]) -> dict[str, list[str]]:
    """Members of ``out`` whose saved config.yaml differs from the requested config, each with
    its differing fields as ``"key=saved X, the study now asks Y"`` (study-set fields
    ignored)."""
    changed = {}
    for member, config in configs.items():
        member_dir = out / member
        try:
            fields = config_changes(member_dir, config, "the study now asks")
        except ConfigError as exc:
            raise ConfigError(f"{exc}; remove {member_dir} to train the member again") from None
        if fields:
            changed[member] = fields
    return changed


def rebuild(out: Path) -> Path:
    """Summary, paired tests and study.html again from a study folder's member runs."""
    saved = json.loads((out / STUDY_FILE).read_text(encoding="utf-8")) \
        if (out / STUDY_FILE).is_file() else {}
    members = saved.get("members") or list(
        dict.fromkeys(pd.read_csv(out / SUMMARY_FILE)["member"].astype(str)))
    summarize(saved.get("study") or out.name, out, members)
    return out / "study.html"


def _parameters(run_dir: Path) -> int:
    from medilab.trained import read_checkpoint_state

    state = read_checkpoint_state(checkpoint_path(run_dir, "best"))
    return int(sum(v.numel() for k, v in state.items() if k.startswith("model.")
                   and v.is_floating_point()))


def summarize(name: str, out: Path, members: list[str]) -> pd.DataFrame:
    """summary.csv, predictions/<member>.csv, paired.csv and study.html from member folders."""
    rows, predictions = [], {}
    metric_names: tuple[str, ...] = DEFAULT_METRICS
    for member in members:
        member_dir = out / member
        metrics_path = member_dir / METRICS_FILE
        if not metrics_path.is_file():
            raise InputFileError(metrics_path, "not found: the member has not been evaluated")
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        extra = json.loads((member_dir / MEMBER_FILE).read_text(encoding="utf-8")) \
            if (member_dir / MEMBER_FILE).is_file() else {}
        family = find_task_family(metrics.get("task"))
        if family is not None and family.summary_metrics:
            metric_names = family.summary_metrics
        for split in ordered_splits(metrics):
            values = metrics["splits"][split]
            row: dict[str, Any] = {"member": member, "split": split, "role": role_label(split)}
            for metric in metric_names:
                entry = values.get(metric, {})
                row[metric] = entry.get("value")
                row[f"{metric}_low"], row[f"{metric}_high"] = entry.get("low"), entry.get("high")
            row["n"] = metrics.get("n", {}).get(split)
            row["train_seconds"] = extra.get("train_seconds")
            row["parameters"] = extra.get("parameters")
            rows.append(row)
            frame_path = member_dir / f"predictions_{split}.csv"
            if frame_path.is_file():
                frame = pd.read_csv(frame_path, dtype={"sample_id": str})
                predictions[(member, split)] = frame
                suffix = "" if split == "val" else f"_{split}"
                write_csv(frame, out / "predictions" / f"{member}{suffix}.csv")
    summary = pd.DataFrame(rows)
    if len(summary):  # the headline (held-out) split's rows first
        headline = "test" if "test" in set(summary["split"]) else "val"
        summary = summary.sort_values("split", key=lambda s: s != headline, kind="stable")
        summary = summary.reset_index(drop=True)
    summary.attrs["metrics"] = list(metric_names)
    write_csv(summary, out / SUMMARY_FILE)
    compared = _paired_split(predictions, members) if "auroc" in metric_names else None
    paired = paired_auroc(predictions, members, splits=[compared] if compared else [])
    write_csv(paired, out / PAIRED_FILE)
    from medilab.reports.study import write_study_page

    settings = member_settings(out, members)
    notices = mismatch_notices(settings)
    for notice in notices:
        warnings.warn(f"{out}: {notice}", UserWarning, stacklevel=2)
    write_study_page(name, out, summary, paired, predictions, members, settings, notices)
    return summary


def _paired_split(predictions: dict[tuple[str, str], pd.DataFrame],
                  members: list[str]) -> str | None:
    """The split members are tested on: ``test`` when every member has one, else ``val``."""
    for split in ("test", "val"):
        if members and all((m, split) in predictions for m in members):
            return split
    return None


def member_settings(out: Path, members: list[str]) -> dict[str, dict[str, Any]]:
    """Per member what should be shared: ``max_epochs``, ``epochs_run``, ``precision`` (as
    trained, from status.json), ``seed`` and the model (name and kwargs), for the page."""
    settings = {}
    for member in members:
        member_dir = out / member
        status = read_status(member_dir) or {}
        try:
            config = load_run_config(member_dir)
        except ConfigError:
            continue
        metrics_path = member_dir / METRICS_FILE
        metrics = json.loads(metrics_path.read_text(encoding="utf-8")) \
            if metrics_path.is_file() else {}
        settings[member] = {
            "class_names": metrics.get("class_names"),
            "positive_class": metrics.get("positive_class"),
            "max_epochs": config.trainer.max_epochs,
            "epochs_run": (status.get("training") or {}).get("epochs_run"),
            "precision": (status.get("precision") or {}).get("precision"),
            "seed": config.seed,
            "model": config.model.name,
            "kwargs": config.model.kwargs,
        }
    return settings


def mismatch_notices(settings: dict[str, dict[str, Any]]) -> list[str]:
    """One line per shared setting (epoch budget, precision, seed) on which members differ."""
    notices = []
    for key, label in (("max_epochs", "epoch budget (trainer.max_epochs)"),
                       ("precision", "precision"), ("seed", "seed")):
        values = {m: s.get(key) for m, s in settings.items() if s.get(key) is not None}
        if len(set(map(str, values.values()))) > 1:
            listed = ", ".join(f"{m} {v}" for m, v in values.items())
            notices.append(f"members differ in {label}: {listed}; their comparison is not "
                           "like with like")
    return notices


def paired_auroc(
    predictions: dict[tuple[str, str], pd.DataFrame], members: list[str],
    num_bootstraps: int = 2000, seed: int = 0, splits: list[str] | None = None,
) -> pd.DataFrame:
    """For every split (of ``splits``, default all) and pair of members scored on the same
    samples: AUROC difference (a − b), its 95 % paired-bootstrap interval, two-sided p-value
    (samples resampled together for both members; patients when a patient column exists), the
    p-value corrected for the split's several comparisons (Holm) and ``significant``:
    corrected p < 0.05."""
    rows = []
    if splits is None:
        splits = sorted({split for _, split in predictions})
    for split in splits:
        for a, b in combinations(members, 2):
            if (a, split) not in predictions or (b, split) not in predictions:
                continue
            left, right = predictions[(a, split)], predictions[(b, split)]
            joined = left.merge(right, on="sample_id", suffixes=("_a", "_b"))
            if len(joined) != len(left) or "prob_1_a" not in joined or "prob_2_a" in joined:
                continue  # different samples, or not binary
            y = joined["label_a"].to_numpy()
            pa, pb = joined["prob_1_a"].to_numpy(), joined["prob_1_b"].to_numpy()
            if len(np.unique(y)) < 2:
                continue
            groups = joined["patient_id_a"].to_numpy() if "patient_id_a" in joined else None
            diff = binary_auroc(y, pa) - binary_auroc(y, pb)
            rng = np.random.default_rng(seed)
            draws = []
            for _ in range(num_bootstraps):
                idx = resample_indices(len(y), groups, rng)
                if len(np.unique(y[idx])) == 2:
                    draws.append(binary_auroc(y[idx], pa[idx]) - binary_auroc(y[idx], pb[idx]))
            draws_array = np.asarray(draws)
            low, high = np.quantile(draws_array, [0.025, 0.975])
            p = min(1.0, 2 * min((draws_array <= 0).mean(), (draws_array >= 0).mean()))
            rows.append({"split": split, "a": a, "b": b, "auroc_difference": diff,
                         "low": float(low), "high": float(high), "p_value": float(p),
                         "n": len(y)})
    table = pd.DataFrame(rows, columns=["split", "a", "b", "auroc_difference", "low", "high",
                                        "p_value", "n"])
    # several pairs per split: Holm's step-down correction keeps the chance of any false
    # "significant" among them at 5 %
    table.insert(7, "p_holm", np.nan)
    for _, part in table.groupby("split"):
        table.loc[part.index, "p_holm"] = holm_adjust(part["p_value"].to_numpy())
    table.insert(8, "significant", table["p_holm"] < ALPHA)
    return table


ALPHA = 0.05


def holm_adjust(p_values: np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values: the k-th smallest of m times (m − k + 1), made
    non-decreasing in that order and capped at 1."""
    p = np.asarray(p_values, float)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, p[order] * (len(p) - np.arange(len(p))))
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def binary_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC of 0/1 ``labels`` (both present): the Mann–Whitney U statistic over
    n_positive·n_negative, ties counting half; equal to sklearn's ``roc_auc_score`` without its
    per-call checks, which made thousands of paired bootstrap draws take many seconds."""
    from scipy.stats import rankdata

    positive = labels == 1
    n_pos = int(positive.sum())
    n_neg = len(labels) - n_pos
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``change`` merged in (mappings recursively; other values replaced)."""
    out = yaml.safe_load(yaml.safe_dump(base))  # a deep copy of plain data
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
