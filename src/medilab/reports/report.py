"""The HTML report of one run folder, built only from the files in it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from medilab.errors import InputFileError
from medilab.reports import plots
from medilab.reports.html import (
    data_uri,
    format_interval,
    format_number,
    is_wide,
    render_page,
    thumbnail_uri,
)
from medilab.reports.runfiles import (
    metric_entry,
    prediction_files,
    read_config,
    read_config_text,
    read_csv,
    read_curves,
    read_metrics_json,
    require_run_dir,
    split_metrics,
)
from medilab.runfolder import (
    REPORT_FILE,
    headline_split,
    ordered_splits,
    role_label,
    warn_if_unfinished,
)
from medilab.tasks.registry import find_task_family

GALLERY_CAP = 24
CASES = 3
RUN_FOLDER_TIME_FORMATS = ("%Y-%m-%dT%H-%M-%S", "%Y-%m-%d_%H-%M-%S", "%Y%m%d-%H%M%S",
                           "%Y-%m-%dT%H-%M-%S.%f")
CONFIG_SUMMARY_KEYS = (
    "seed", "data.source", "data.root", "data.path", "data.table", "data.covariates",
    "data.group", "data.class_names", "data.positive_class", "data.classes", "data.batch_size",
    "model.name", "model.kwargs", "loss.name",
    "optimizer.name", "optimizer.lr", "optimizer.weight_decay", "scheduler.name",
    "trainer.max_epochs", "trainer.precision", "trainer.accelerator", "trainer.monitor",
)
# a run without a known task (or metrics) gets the classification pages
DEFAULT_PLOTS = ("confusion_matrix", "f1_per_class", "roc", "calibration", "scores")
PLOT_TITLES = {"confusion_matrix": "confusion matrix", "f1_per_class": "F1 per class",
               "roc": "ROC", "calibration": "calibration", "scores": "per-image scores"}
ENSEMBLE_FILE = "ensemble.json"
STOP_REASONS = {"max_epochs": "reached max_epochs", "early_stopping": "early stopping",
                "max_time": "reached max_time", "time_budget": "time budget spent"}
FILE_PATTERNS = ("metrics.json", "metrics.csv", "predictions_*.csv", "splits.csv", "config.yaml",
                 "checkpoints/*.ckpt")


@dataclass
class Image:
    """One embedded image: a caption, its ``data:`` URI and where it came from."""

    title: str
    uri: str
    source: str
    wide: bool = False


@dataclass
class Section:
    """A titled group of images; ``note`` says e.g. how many were left out."""

    title: str
    images: list[Image] = field(default_factory=list)
    note: str = ""
    gallery: bool = False


def make_run_plots(run_dir: Path, task: str | None = None,
                   class_names: list[str] | None = None,
                   threshold: float | None = None) -> list[tuple[str, Path]]:
    """Write the plots the run folder's files allow into ``run_dir/plots``; ``(title, path)``s.
    The task's family names its per-split plots (``report_plots``); ``threshold``: the binary
    decision threshold, marked on the ROC curves."""
    run_dir = Path(run_dir)
    family = find_task_family(task)
    kinds = family.report_plots if family is not None else DEFAULT_PLOTS
    # per-sample score columns of predictions_<split>.csv (segmentation: iou, dice)
    score_columns = family.summary_metrics if family is not None else ()
    out = run_dir / "plots"
    made: list[tuple[str, Path | None]] = []
    curves = read_curves(run_dir)
    if curves is not None:
        made += [
            ("Loss", plots.plot_loss_curves(curves, out / "loss_curves.png")),
            ("Metrics per epoch (val solid, train dashed)",
             plots.plot_metric_curves(curves, out / "metric_curves.png")),
            ("Learning rate", plots.plot_lr_curve(curves, out / "learning_rate.png")),
        ]
    for split, path in prediction_files(run_dir).items():
        frame = read_csv(path)
        if frame is None or frame.empty:
            continue
        made += [(f"{split}: {PLOT_TITLES[kind]}",
                  _split_plot(kind, frame, out, split, class_names, threshold, score_columns))
                 for kind in kinds]
    for path in sorted(run_dir.glob("curves_*.json")):  # detection: PR, FROC, image scores
        split = path.stem.removeprefix("curves_")
        try:
            curves = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        made.append((f"{split}: PR, FROC and image scores", plots.plot_detection_curves(
            curves, out / f"{split}_detection_curves.png", title=split)))
    return [(title, path) for title, path in made if path is not None]


def _split_plot(kind: str, frame: pd.DataFrame, out: Path, split: str,
                class_names: list[str] | None, threshold: float | None,
                score_columns: tuple[str, ...] = ()) -> Path | None:
    """One per-split plot named by a family's ``report_plots`` (``out/<split>_<kind>.png``)."""
    path = out / f"{split}_{kind}.png"
    if kind == "roc":
        return plots.plot_roc(frame, path, class_names, title=split, threshold=threshold)
    if kind == "scores":
        return plots.plot_score_distribution(frame, path, score_columns, title=split)
    drawer = {"confusion_matrix": plots.plot_confusion_matrix,
              "f1_per_class": plots.plot_f1_per_class,
              "calibration": plots.plot_calibration}[kind]
    return drawer(frame, path, class_names, title=split)


def build_report(run_dir: Path) -> Path:
    """Make the plots and write ``run_dir/report.html``; return its path.

    Uses whatever is present: ``metrics.json`` (tables, notes), ``metrics.csv`` (curves),
    ``predictions_<split>.csv`` (confusion matrix, ROC, calibration, per-image scores, best and
    worst cases), ``config.yaml`` (summary and full text) and every PNG under ``plots/``.
    """
    run_dir = require_run_dir(run_dir)
    warn_if_unfinished(run_dir)
    metrics = read_metrics_json(run_dir) or {}
    config = read_config(run_dir) or {}
    task = metrics.get("task") or config.get("task")
    class_names = metrics.get("class_names")
    curves = read_curves(run_dir)
    chosen = metrics.get("threshold")
    threshold = _float(chosen.get("value")) if isinstance(chosen, dict) else math.nan
    generated = make_run_plots(run_dir, task, class_names,
                               threshold if math.isfinite(threshold) else None)
    sections = [Section("Plots", [_image(title, path, run_dir) for title, path in generated])]
    sections += _other_plot_sections(run_dir, {p.resolve() for _, p in generated},
                                     skip=_case_folders(run_dir))
    family = find_task_family(task)
    legend = family.overlay_legend if family is not None else ""
    for section in sections:
        if legend and "overlay" in section.title.lower():
            section.note = f"{legend} {section.note}".strip()
    members = ensemble_members(run_dir)
    return render_page(
        "report.html",  # the template
        run_dir / REPORT_FILE,
        experiment=metrics.get("experiment") or config.get("experiment") or run_dir.parent.name,
        task=task or "–",
        model=_model_name(metrics, config, members),
        ensemble=members,
        training=[*class_facts(metrics), *training_facts(metrics, config, curves)],
        overlay_legend=legend,
        run_name=run_dir.name,
        run_date=_run_date(run_dir),
        built=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        has_metrics=bool(metrics),
        confidence=_percent(metrics.get("confidence", 0.95)),
        checkpoint=metrics.get("checkpoint"),
        config_summary=_config_summary(config),
        metric_tables=_metric_tables(metrics),
        subgroup_tables=_subgroup_tables(metrics),
        fusion_table=fusion_table(metrics),
        notes=[*_notes(metrics), *_glossary(metrics)],
        sections=[s for s in sections if s.images],
        cases=_cases(run_dir),
        config_text=read_config_text(run_dir),
        files=_files(run_dir),
    )


# --------------------------------------------------------------------------- pieces


def class_facts(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """``classes``: index and name of each class; ``positive class``: the one sensitivity,
    the ROC curve and the threshold are about (binary tasks)."""
    names = metrics.get("class_names")
    if not isinstance(names, list) or not names:
        return []
    facts = [("classes", " · ".join(f"{k} = {name}" for k, name in enumerate(names)))]
    if metrics.get("positive_class"):
        facts.append(("positive class", f"{metrics['positive_class']} (sensitivity, ROC, "
                                        "threshold)"))
    return facts


def training_facts(metrics: dict[str, Any], config: dict[str, Any],
                   curves: pd.DataFrame | None) -> list[tuple[str, str]]:
    """Epochs run, best epoch (counted from 1), stop reason and monitored score, for the
    page header.

    From metrics.json's ``training`` block when the engine wrote one; otherwise epochs run
    and the best epoch of the monitored metric (``trainer.monitor`` / ``monitor_mode``) are
    read off the per-epoch curves of metrics.csv.
    """
    block = metrics.get("training")
    block = block if isinstance(block, dict) else {}
    monitor = block.get("monitor") or _get(config, "trainer.monitor")
    facts: list[tuple[str, str]] = []
    epochs_run, best_epoch, best_score = (block.get(k) for k in
                                          ("epochs_run", "best_epoch", "best_score"))
    if curves is not None and not curves.empty:
        if epochs_run is None:
            epochs_run = len(curves.index)
        if best_epoch is None and monitor in curves.columns and curves[monitor].notna().any():
            series = curves[monitor].dropna()
            mode = _get(config, "trainer.monitor_mode") or ("min" if "loss" in monitor else "max")
            best = series.idxmin() if mode == "min" else series.idxmax()
            best_epoch = int(best) + 1  # counted from 1, as the engine's summary does
            best_score = float(series.loc[best]) if best_score is None else best_score
    max_epochs = block.get("max_epochs") or _get(config, "trainer.max_epochs")
    if epochs_run is not None:
        facts.append(("epochs run", f"{epochs_run}" + (f" of {max_epochs}" if max_epochs else "")))
    if best_epoch is not None:
        score = f" ({monitor} {format_number(_float(best_score))})" if monitor else ""
        facts.append(("best epoch", f"{best_epoch}{score}"))
    reason = block.get("stop_reason")
    if reason:
        facts.append(("stopped", STOP_REASONS.get(str(reason), str(reason))))
    return facts


def ensemble_members(run_dir: Path) -> list[dict[str, str]]:
    """The member runs of an ensemble folder (``ensemble.json``): path, experiment and model."""
    path = run_dir / ENSEMBLE_FILE
    if not path.is_file():
        return []
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(path, f"not valid JSON ({exc})") from None
    members = []
    for member in (spec.get("members") if isinstance(spec, dict) else None) or []:
        folder = Path(str(member))
        if not folder.is_absolute():
            folder = run_dir / folder
        try:
            member_metrics = read_metrics_json(folder) if folder.is_dir() else None
            member_config = read_config(folder) if folder.is_dir() else None
        except InputFileError:
            member_metrics = member_config = None
        member_metrics, member_config = member_metrics or {}, member_config or {}
        members.append({
            "path": str(member),
            "experiment": str(member_metrics.get("experiment")
                              or member_config.get("experiment") or folder.parent.name),
            "model": str(member_metrics.get("model") or _get(member_config, "model.name") or "–"),
            "found": "" if folder.is_dir() else "missing",
        })
    return members


def _model_name(metrics: dict[str, Any], config: dict[str, Any],
                members: list[dict[str, str]]) -> str:
    if members:
        models = sorted({m["model"] for m in members})
        return f"ensemble of {len(members)} runs ({', '.join(models)}): mean probability"
    return str(metrics.get("model") or _get(config, "model.name") or "–")


def _image(title: str, path: Path, run_dir: Path, thumbnail: bool = False) -> Image:
    uri = thumbnail_uri(path) if thumbnail else data_uri(path)
    return Image(title, uri or "", _relative(path, run_dir), is_wide(path))


def _relative(path: Path, run_dir: Path) -> str:
    try:
        return path.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return path.name


def _case_folders(run_dir: Path) -> set[str]:
    """``plots/cases_<split>`` folders whose images the best/worst cases section shows."""
    return {path.stem for path in run_dir.glob("cases_*.csv")}


def _other_plot_sections(run_dir: Path, generated: set[Path],
                         skip: set[str] | None = None) -> list[Section]:
    """PNGs in ``plots/`` not made here: top-level ones, then one gallery per sub-folder
    (except the ``skip`` folders, shown elsewhere on the page)."""
    root = run_dir / "plots"
    if not root.is_dir():
        return []
    groups: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*.png")):
        if path.name.startswith(".") or path.resolve() in generated:
            continue
        folder = path.parent.relative_to(root).as_posix()
        if folder in (skip or set()):
            continue
        groups.setdefault(folder, []).append(path)
    sections = []
    for folder in sorted(groups, key=lambda f: (f != ".", "overlay" not in f, f)):
        paths = groups[folder]
        shown = paths[:GALLERY_CAP]
        note = (f"showing {len(shown)} of {len(paths)} images in plots/{folder}/. "
                if len(paths) > len(shown) else "")
        if folder != ".":
            note += "Thumbnails: click one to open the full image from the run folder."
        title = "Other plots" if folder == "." else f"Gallery: {folder}"
        images = [_image(p.stem, p, run_dir, thumbnail=folder != ".") for p in shown]
        sections.append(Section(title, images, note, gallery=folder != "."))
    return sections


def _percent(confidence: Any) -> str:
    try:
        return f"{100 * float(confidence):g}%"
    except (TypeError, ValueError):
        return "95%"


def _get(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _config_summary(config: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    family = find_task_family(config.get("task"))
    unused = family.unused_config_keys if family is not None else ()
    for key in CONFIG_SUMMARY_KEYS:
        value = _get(config, key)
        if value is None or value == {} or key in unused:
            continue  # e.g. a detector has its own losses (RPN and box head)
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "none"
        rows.append((key, str(value)))
    return rows


def _run_date(run_dir: Path) -> str:
    for fmt in RUN_FOLDER_TIME_FORMATS:
        try:
            return datetime.strptime(run_dir.name, fmt).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
    stamp = next((p for p in (run_dir / "config.yaml", run_dir / "metrics.json") if p.is_file()),
                 run_dir)
    return datetime.fromtimestamp(stamp.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _metric_tables(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One table per split of metrics.json (val, test, …), with the calibration error of the
    split when the ``calibration`` block has one."""
    tables = []
    counts = metrics.get("n") or {}
    calibration = metrics.get("calibration")
    calibration = calibration if isinstance(calibration, dict) else {}
    headline = headline_split(metrics)
    for split in ordered_splits(metrics):
        rows = [(name, format_interval(*entry))
                for name, entry in split_metrics(metrics, split).items()]
        block = calibration.get(split)
        if isinstance(block, dict) and math.isfinite(ece := _float(block.get("ece"))):
            rows.append(("ece (calibration error)", format_number(ece)))
        if rows:
            n = counts.get(split) if isinstance(counts, dict) else None
            tables.append({"split": split, "n": n, "rows": rows, "role": role_label(split),
                           "headline": split == headline})
    return tables


def _notes(metrics: dict[str, Any]) -> list[str]:
    """metrics.json's notes, and the decision threshold when one was chosen."""
    notes = [str(n) for n in metrics.get("notes") or []]
    if metrics.get("headline_note"):
        notes.insert(0, str(metrics["headline_note"]))
    if metrics.get("operating_point"):
        notes.append(f"Predicted class (prediction column, confusion matrix, accuracy, "
                     f"sensitivity, specificity): {metrics['operating_point']}.")
    skipped = [f"{name} ({split}: {entry['skipped']})"
               for split, block in (metrics.get("splits") or {}).items()
               if isinstance(block, dict)
               for name, entry in block.items()
               if isinstance(entry, dict) and isinstance(entry.get("skipped"), int)
               and entry["skipped"] > 0]
    if skipped:
        notes.append("Bootstrap draws without a class the metric needs (no positives for "
                     "sensitivity, a class missing for AUROC, …) were skipped, not scored 0: "
                     + ", ".join(skipped[:12]) + (" …" if len(skipped) > 12 else "") + ".")
    tta = metrics.get("tta")
    if isinstance(tta, dict) and tta.get("mode") not in (None, "none"):
        notes.append(f"Test-time augmentation: {tta.get('rule') or tta.get('mode')} "
                     f"({tta.get('views')} views per image).")
    threshold = metrics.get("threshold")
    if isinstance(threshold, dict) and math.isfinite(value := _float(threshold.get("value"))):
        rule = f": {threshold['rule']}" if threshold.get("rule") else ""
        notes.append(f"Decision threshold {format_number(value)} chosen on "
                     f"{threshold.get('chosen_on', 'val')}{rule}.")
    return notes


def fusion_table(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Image-only, covariates-only and fused side by side (``covariate_fusion`` of
    metrics.json): per split, AUROC with its interval and log loss; the held-out test part
    first and marked, val labelled as the set that chose the weight."""
    record = metrics.get("covariate_fusion")
    if not isinstance(record, dict) or not isinstance(record.get("branches"), dict):
        return None
    weight = _float(record.get("weight_image"))
    columns = ["image only", "covariates only",
               f"fused (image weight {format_number(weight)})"]
    rows = []
    for split, branches in record["branches"].items():
        if not isinstance(branches, dict):
            continue
        label = f"{split} ({role_label(split)})"
        for metric in ("auroc", "log_loss"):
            cells = []
            for name in ("image", "covariates", "fused"):
                entry = (branches.get(name) or {}).get(metric)
                cells.append(format_interval(*_interval(entry)) if isinstance(entry, dict)
                             else format_number(_float(entry)))
            rows.append({"split": label, "metric": metric.replace("_", " "), "cells": cells,
                         "headline": split == "test"})
    held_out = "test" in record["branches"]
    note = (f"p = {format_number(weight)} · p_image + {format_number(1 - weight)} · "
            f"p_covariates, the weight chosen on {record.get('chosen_on', 'val')} over a grid "
            "on [0, 1] that includes image only (1) and covariates only (0). Covariates only: "
            f"{record.get('covariates_member', 'a logistic regression')}. "
            + ("The test figures are held out; val's are in-sample for the weight."
               if held_out else "No held-out test part: val chose the weight, so its figures "
               "are in-sample (set data.test_fraction for held-out ones)."))
    return {"columns": columns, "rows": rows, "note": note}


def _interval(entry: dict[str, Any]) -> tuple[float, float, float]:
    return _float(entry.get("value")), _float(entry.get("low")), _float(entry.get("high"))


def _subgroup_tables(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Per split: a row per subgroup, each cell its value over its interval, and the largest
    gap between two groups (``subgroup_gaps``)."""
    tables = []
    gaps = metrics.get("subgroup_gaps") or {}
    for split, groups in (metrics.get("subgroups") or {}).items():
        if not isinstance(groups, dict) or not groups:
            continue
        columns: list[str] = []
        for values in groups.values():
            columns += [k for k in (values or {}) if k != "n" and k not in columns]
        rows = []
        for name, values in groups.items():
            values = values or {}
            cells = [_stacked_interval(values[c]) if c in values else ("–", "")
                     for c in columns]
            rows.append({"name": name, "n": values.get("n", "–"), "cells": cells})
        tables.append({"split": split, "columns": columns, "rows": rows,
                       "gap": _gap_text(gaps.get(split))})
    return tables


def _stacked_interval(entry: Any) -> tuple[str, str]:
    """(value, "[low, high]") for a cell that shows the interval under its value."""
    value, low, high = metric_entry(entry)
    text = format_interval(value, low, high)
    head, _, rest = text.partition(" [")
    return head, f"[{rest}" if rest else ""


COUNT_COLUMNS = ("hits", "truth_boxes", "false_positives")


def _count_or_number(column: str, value: Any) -> str:
    """Counts (boxes hit, ground-truth boxes, false positives) as integers; else 3 digits."""
    number = _float(value)
    if column in COUNT_COLUMNS and math.isfinite(number) and number.is_integer():
        return str(int(number))
    return format_number(number)


# what a reader needs to read the detection metrics (shown when the run has them; froc and
# image_auroc are explained by the detection family's own notes)
METRIC_GLOSSARY = {
    "map": "map: COCO mean average precision over IoU thresholds 0.50 to 0.95 (100 boxes per "
           "image).",
    "ap50": "ap50 / ap40: average precision where a box counts as found when it overlaps a "
            "ground-truth box with IoU ≥ 0.5 / ≥ 0.4 (looser, common for lesions).",
    "recall50@100": "recall50@k: share of ground-truth boxes found (IoU ≥ 0.5) among the k "
                    "highest-scoring boxes of each image.",
}


def _glossary(metrics: dict[str, Any]) -> list[str]:
    names = {name for values in (metrics.get("splits") or {}).values()
             if isinstance(values, dict) for name in values}
    return [text for name, text in METRIC_GLOSSARY.items() if name in names]


def _gap_text(gap: Any) -> str:
    """"Largest gap: AUROC 0.12 between sex=F (best) and sex=M" from ``subgroup_gaps``."""
    if not isinstance(gap, dict) or "difference" not in gap:
        return ""
    return (f"Largest gap: {gap.get('metric', 'metric')} differs by "
            f"{format_number(_float(gap['difference']))} between {gap.get('column')} = "
            f"{gap.get('best')} (highest) and {gap.get('column')} = {gap.get('worst')} "
            "(lowest); read it with their intervals: a gap inside them may be chance.")


def _cases(run_dir: Path) -> dict[str, Any] | None:
    """Best and worst images by ``dice`` in ``predictions_val.csv`` (or test), with overlays.

    Up to ``CASES`` each; with few images they split them, so no image is in both.
    """
    files = prediction_files(run_dir)
    for split in ("val", "test"):
        frame = read_csv(files[split]) if split in files else None
        by = "dice"
        if frame is None or by not in frame.columns:  # detection: cases_<split>.csv
            cases_csv = run_dir / f"cases_{split}.csv"
            frame, by = (read_csv(cases_csv) if cases_csv.is_file() else None), "matched"
        if frame is None or by not in frame.columns:
            continue
        frame = frame.assign(**{by: pd.to_numeric(frame[by], errors="coerce")})
        frame = frame.dropna(subset=[by]).sort_values(by, ascending=False, kind="stable")
        if frame.empty:
            continue
        id_col = next((c for c in ("sample_id", "image", "id") if c in frame.columns),
                      frame.columns[0])
        score_cols = [c for c in ("dice", "iou", "auc", "matched", "hits", "truth_boxes",
                                  "false_positives", "top_score") if c in frame.columns]
        overlay_col = next((c for c in frame.columns if "overlay" in str(c).lower()), None)
        n_best = min(CASES, (len(frame) + 1) // 2)  # never the same image in both groups
        n_worst = min(CASES, len(frame) - n_best)
        picks = [("Best", frame.head(n_best)), ("Worst", frame.iloc[n_best:].tail(n_worst)[::-1])]
        groups = []
        for title, rows in (p for p in picks if not p[1].empty):
            cases = []
            for _, row in rows.iterrows():
                overlay = _find_overlay(run_dir, row, id_col, overlay_col)
                cases.append({
                    "id": str(row[id_col]),
                    "scores": [(c, _count_or_number(c, row[c])) for c in score_cols],
                    "uri": thumbnail_uri(overlay) if overlay else None,
                    "href": _relative(overlay, run_dir) if overlay else None,
                })
            groups.append({"title": title, "cases": cases})
        return {"split": split, "groups": groups, "n": len(frame),
                "by": "Dice" if by == "dice" else "matched boxes"}
    return None


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _find_overlay(
    run_dir: Path, row: pd.Series, id_col: str, overlay_col: str | None
) -> Path | None:
    """The overlay image of a row: its overlay column, else a PNG in plots/ named after it."""
    if overlay_col is not None and isinstance(row[overlay_col], str) and row[overlay_col]:
        given = Path(row[overlay_col])
        for candidate in (given, run_dir / given, run_dir / "plots" / given):
            if candidate.is_file():
                return candidate
        return None
    stem = Path(str(row[id_col])).stem
    plots_dir = run_dir / "plots"
    if not stem or not plots_dir.is_dir():
        return None
    matches = sorted((p for p in plots_dir.rglob(f"{stem}*.png") if p.parent != plots_dir),
                     key=lambda p: ("overlay" not in p.as_posix(), p))
    return matches[0] if matches else None


def _files(run_dir: Path) -> list[dict[str, str]]:
    files = []
    for pattern in FILE_PATTERNS:
        for path in sorted(run_dir.glob(pattern)):
            if path.is_file():
                files.append({"href": _relative(path, run_dir), "size": _size(path.stat().st_size)})
    return files


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
