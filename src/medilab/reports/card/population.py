"""The data a run saw: counts per split (images, patients, classes) from splits.csv, and the
characteristics of each partition (age, sex, any covariate, label balance) from the data's own
rows, with a test of whether the partitions differ (chi-square / Kruskal-Wallis, scipy)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from medilab.errors import MedilabError
from medilab.io.messages import one_line
from medilab.reports.card.runinfo import RunInfo

SPLIT_ORDER = ("train", "val", "test")
SKIP_COLUMNS = ("sample_id", "patient_id", "image", "image_name", "mask", "fov", "boxes",
                "box_labels", "label", "split", "label_text")
MAX_LEVELS = 12  # a categorical column with more levels is summarised as its level count


@dataclass
class DataRows:
    """The data's own rows joined to splits.csv, or why they could not be read."""

    table: pd.DataFrame | None  # sample_id, split, [patient_id], [label], characteristics
    rows_read: int | None  # rows the data source listed
    note: str = ""
    columns: list[str] = field(default_factory=list)  # characteristic columns


def ordered(splits: list[str]) -> list[str]:
    """train, val, test first, then any other split (folds) by name."""
    rank = {s: i for i, s in enumerate(SPLIT_ORDER)}
    return sorted(dict.fromkeys(splits), key=lambda s: (rank.get(s, 9), s))


def data_rows(info: RunInfo) -> DataRows:
    """The rows of the run's data source (``sample_table``), joined to splits.csv by sample id;
    a data folder that is gone (or a source without a table) leaves splits.csv alone."""
    if info.splits is None:
        return DataRows(None, None, "no splits.csv in the run folder")
    try:
        from medilab.data.sources.base import get_source
        from medilab.runfolder import load_run_config

        config = load_run_config(info.run_dir)
        samples = get_source(config.data.source).sample_table(config, pixels=False)
    except (MedilabError, OSError, ValueError, KeyError) as exc:
        return DataRows(None, None, f"the data's own rows could not be read ({one_line(exc)}); "
                                    "counts come from splits.csv alone")
    if samples is None:
        return DataRows(None, None, "the data source lists no rows of its own")
    table = samples.table.copy()
    table["sample_id"] = table["sample_id"].astype(str)
    splits = info.splits[["sample_id", "split"]].astype(str)
    merged = splits.merge(table.drop(columns=["split"], errors="ignore"), on="sample_id",
                          how="left")
    columns = [c for c in table.columns if c not in SKIP_COLUMNS
               and c in {*samples.covariates, *(info.get("evaluation.subgroups") or [])}]
    return DataRows(merged, len(table), "", columns)


def split_counts(info: RunInfo) -> pd.DataFrame:
    """Per split of splits.csv: images, patients (when a patient column exists), and images
    per class (``class <name>`` columns, when splits.csv has labels)."""
    splits = info.splits
    if splits is None or splits.empty:
        return pd.DataFrame()
    # splits.csv's label is the class index for classification; other families stratify
    # on a label of their own (e.g. detection: which box class an image holds)
    names = (info.metrics.get("class_names") or []) if info.task == "classification" else []
    rows = []
    for split in ordered(list(splits["split"].astype(str))):
        part = splits[splits["split"].astype(str) == split]
        row: dict[str, Any] = {"split": split, "images": len(part)}
        if "patient_id" in part:
            row["patients"] = int(part["patient_id"].nunique())
        if "label" in part:
            for label, count in part["label"].value_counts().sort_index().items():
                row[f"class {class_name(label, names)}"] = int(count)
        rows.append(row)
    return pd.DataFrame(rows).fillna(0)


def class_name(label: Any, names: list[str]) -> str:
    """A class index as its name (``1`` → ``none``) when the run names its classes."""
    try:
        index = int(float(label))
    except (TypeError, ValueError):
        return str(label)
    return str(names[index]) if 0 <= index < len(names) else str(label)


@dataclass
class Characteristic:
    """One characteristic by partition: its rows (level or statistic → text per split) and the
    test of a difference between partitions."""

    name: str
    kind: str  # numeric / categorical
    rows: list[tuple[str, dict[str, str]]]
    test: str
    p_value: float | None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # categorical: level → n


def characteristics(rows: DataRows, names: list[str] | None = None) -> list[Characteristic]:
    """Label balance, then every characteristic column, by partition."""
    table = rows.table
    if table is None:
        return []
    found = []
    if "label" in table and table["label"].notna().any():
        labels = table["label"].map(lambda v: class_name(v, names or []))
        found.append(_categorical("label", table.assign(label=labels)))
    for column in rows.columns:
        values = table[column]
        numeric = pd.to_numeric(values, errors="coerce")
        if values.notna().any() and numeric[values.notna()].notna().all():
            found.append(_numeric(column, table.assign(**{column: numeric})))
        elif values.nunique() <= MAX_LEVELS:
            found.append(_categorical(column, table))
    return found


def _numeric(column: str, table: pd.DataFrame) -> Characteristic:
    splits = ordered(list(table["split"]))
    groups = {s: table.loc[table["split"] == s, column] for s in splits}
    mean_sd, median_iqr, missing = {}, {}, {}
    for split, values in groups.items():
        present = values.dropna()
        mean_sd[split] = (f"{present.mean():.1f} ± {present.std(ddof=1):.1f}"
                          if len(present) > 1 else (f"{present.mean():.1f}" if len(present)
                                                    else "–"))
        median_iqr[split] = (f"{present.median():.1f} [{present.quantile(0.25):.1f}, "
                             f"{present.quantile(0.75):.1f}]" if len(present) else "–")
        missing[split] = str(int(values.isna().sum()))
    samples = [g.dropna().to_numpy() for g in groups.values() if g.notna().sum() > 0]
    p_value = None
    if len(samples) >= 2 and len(np.unique(np.concatenate(samples))) > 1:
        p_value = float(stats.kruskal(*samples).pvalue)
    return Characteristic(column, "numeric",
                          [("mean ± SD", mean_sd), ("median [IQR]", median_iqr),
                           ("missing", missing)], "Kruskal-Wallis", p_value)


def _categorical(column: str, table: pd.DataFrame) -> Characteristic:
    splits = ordered(list(table["split"]))
    values = table[column].astype(object).where(table[column].notna(), "missing").astype(str)
    crosstab = pd.crosstab(values, table["split"]).reindex(columns=splits, fill_value=0)
    totals = crosstab.sum(axis=0)
    rows = []
    counts: dict[str, dict[str, int]] = {}
    for level, counts_row in crosstab.iterrows():
        cells = {s: f"{int(counts_row[s])} ({100 * counts_row[s] / totals[s]:.0f}%)"
                 if totals[s] else "0" for s in splits}
        rows.append((str(level), cells))
        counts[str(level)] = {s: int(counts_row[s]) for s in splits}
    tested = crosstab.loc[:, totals > 0]
    tested = tested.loc[tested.sum(axis=1) > 0]
    p_value = None
    if tested.shape[0] >= 2 and tested.shape[1] >= 2:
        p_value = float(stats.chi2_contingency(tested.to_numpy()).pvalue)
    return Characteristic(column, "categorical", rows, "chi-square", p_value, counts)


def p_text(p_value: float | None) -> str:
    """``p = 0.42``, ``p < 0.001``, or a dash when no test could be made."""
    if p_value is None or not math.isfinite(p_value):
        return "–"
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"


def split_method(info: RunInfo) -> list[str]:
    """How the split was made, from the config and splits.csv."""
    data = info.get("data") or {}
    lines = []
    if data.get("splits_csv"):
        lines.append("A saved splits table was reused (data.splits_csv).")
    group = data.get("group")
    grouped = info.splits is not None and "patient_id" in info.splits
    lines.append(
        f"Grouped by patient (column {group!r}): no patient is in two partitions."
        if grouped and group else
        "Grouped by patient: no patient is in two partitions." if grouped else
        "Not grouped by patient (the data has no patient column): images of one patient may "
        "be in several partitions.")
    stratified = info.splits is not None and "label" in info.splits
    lines.append(("Stratified by label where every class has enough samples; " if stratified
                  else "Not stratified (splits.csv has no label); ")
                 + f"seed {info.get('seed')}; val fraction {data.get('val_fraction')}.")
    test = data.get("test_fraction") or 0
    has_test = info.splits is not None and (info.splits["split"] == "test").any()
    if has_test and test:
        lines.append(f"A test part (fraction {test}) was held out before anything was fitted; "
                     "it was scored once.")
    elif has_test:
        lines.append("The data's own test part was kept as the held-out test partition.")
    else:
        lines.append("No held-out test partition (data.test_fraction is 0).")
    if info.splits is not None:
        folds = [s for s in info.splits["split"].astype(str).unique() if s.startswith("fold")]
        if folds:
            lines.append(f"Cross-validation folds: {len(folds)}.")
    return lines
