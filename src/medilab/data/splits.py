"""Seeded train/val/test or k-fold splits, stratified and grouped by patient, and a leakage check.

A splits table is a DataFrame ``sample_id, split[, patient_id]``; ``split`` is ``train``/``val``/
``test`` or ``fold0``..``fold{K-1}`` (plus ``test`` when a test part is held out of the folds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
)

from medilab.errors import InputFileError, MedilabError
from medilab.io.messages import short_list
from medilab.io.tables import read_csv_table


class SplitOptionError(MedilabError):
    """``val`` / ``test`` / ``folds`` are invalid (about the options, not about a file)."""


def check_fractions(val: float, test: float, folds: int | None = None) -> None:
    """Raise ``SplitOptionError`` unless ``val`` and ``test`` lie in [0, 1), ``folds`` (when
    given) is at least 2 and, without folds, ``val + test < 1``."""
    for name, value in (("val", val), ("test", test)):
        if not 0.0 <= value < 1.0:
            raise SplitOptionError(f"{name} must be a fraction in [0, 1) (got {value:g})")
    if folds is not None and folds < 2:
        raise SplitOptionError(f"folds must be at least 2 (got {folds})")
    if not folds and val + test >= 1.0:
        raise SplitOptionError(f"val + test must be < 1 (got {val:g} + {test:g})")


def _n_splits_for(fraction: float, n: int) -> int:
    if not 0.0 < fraction < 1.0:
        raise MedilabError(f"held-out fraction {fraction:.3g}: must be between 0 and 1")
    return max(2, min(n, round(1.0 / fraction)))


def _kfold(n_splits: int, grouped: bool, stratified: bool, seed: int):
    if grouped and stratified:
        return StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    if grouped:
        return GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    if stratified:
        return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return KFold(n_splits=n_splits, shuffle=True, random_state=seed)


def _fold_ids(
    n: int, y: np.ndarray | None, groups: np.ndarray | None, n_splits: int, seed: int
) -> np.ndarray:
    """Fold number (0..n_splits-1) of each of ``n`` samples."""
    splitter = _kfold(n_splits, groups is not None, y is not None, seed)
    folds = np.full(n, -1, dtype=int)
    x = np.zeros((n, 1))
    try:
        for k, (_, held) in enumerate(splitter.split(x, y, groups)):
            folds[held] = k
    except ValueError as exc:  # e.g. fewer patients than folds
        raise MedilabError(f"cannot make {n_splits} splits: {exc}") from None
    return folds


def _hold_out(
    n: int, y: np.ndarray | None, groups: np.ndarray | None, fraction: float, seed: int
) -> np.ndarray:
    """Boolean mask of a held-out part of about ``fraction`` of ``n`` samples."""
    unit = len(np.unique(groups)) if groups is not None else n
    n_splits = _n_splits_for(fraction, unit)
    if y is not None:
        _, counts = np.unique(y, return_counts=True)
        if counts.min() < n_splits:  # too few of a class to stratify: fall back to plain
            y = None
    return _fold_ids(n, y, groups, n_splits, seed) == 0


def make_splits(
    manifest: pd.DataFrame,
    *,
    group: str | None = "patient_id",
    stratify: str | None = "label",
    val: float = 0.2,
    test: float = 0.0,
    folds: int | None = None,
    seed: int = 42,
    id_column: str = "sample_id",
) -> pd.DataFrame:
    """Split a manifest; returns ``sample_id, split[, <group>]`` in manifest order.

    With ``folds`` K the non-test samples get ``fold0..fold{K-1}``, otherwise ``train``/``val``.
    ``test`` > 0 first holds out a test part. Grouping uses sklearn's StratifiedGroupKFold (or
    GroupKFold), so a patient never lands in two splits; fractions are met approximately.
    A column named as ``group`` or ``stratify`` that is missing is an error; pass ``None`` to
    split without it. Fractions are checked first (:func:`check_fractions`).
    """
    check_fractions(val, test, folds)
    for name, column in (("group", group), ("stratify", stratify), ("id", id_column)):
        if column is not None and column not in manifest.columns:
            raise MedilabError(
                f"manifest: {name} column {column!r} not found; "
                f"has {short_list(manifest.columns)}"
            )
    if manifest[id_column].duplicated().any():
        dup = manifest[id_column][manifest[id_column].duplicated()].iloc[0]
        raise MedilabError(f"manifest: column {id_column!r}: duplicate id {dup!r}")
    n = len(manifest)
    if n < 2:
        raise MedilabError("manifest: need at least 2 samples to split")
    y_all = _codes(manifest[stratify]) if stratify else None
    g_all = _codes(manifest[group]) if group else None
    split = np.empty(n, dtype=object)
    rest = np.arange(n)
    if test > 0:
        is_test = _hold_out(n, y_all, g_all, test, seed)
        split[is_test] = "test"
        rest = np.flatnonzero(~is_test)
    y = y_all[rest] if y_all is not None else None
    g = g_all[rest] if g_all is not None else None
    if folds:
        fold = _fold_ids(len(rest), y, g, folds, seed)
        split[rest] = [f"fold{k}" for k in fold]
    elif val > 0:
        fraction = val / (1.0 - test)
        is_val = _hold_out(len(rest), y, g, fraction, seed + 1)
        split[rest] = np.where(is_val, "val", "train")
    else:
        split[rest] = "train"
    out = pd.DataFrame({"sample_id": manifest[id_column].astype(str).to_numpy(), "split": split})
    if group:
        out[group] = manifest[group].to_numpy()
    return out


def _codes(series: pd.Series) -> np.ndarray:
    if series.isna().any():
        raise MedilabError(
            f"manifest: column {series.name!r}: row {int(np.flatnonzero(series.isna())[0]) + 1} "
            "is empty; cannot split on it"
        )
    return pd.factorize(series.astype(str))[0]


def check_leakage(
    table: pd.DataFrame, *, split_column: str = "split", group: str = "patient_id"
) -> pd.DataFrame:
    """Groups (patients) found in more than one split: ``<group>, splits, n_samples``."""
    for column in (split_column, group):
        if column not in table.columns:
            raise MedilabError(f"column {column!r} not found; has {short_list(table.columns)}")
    frame = table[[group, split_column]].dropna()
    per_group = frame.groupby(group, sort=True)[split_column].agg(
        splits=lambda s: ",".join(sorted(set(map(str, s)))), n_splits="nunique", n_samples="size"
    )
    leaks = per_group[per_group["n_splits"] > 1].drop(columns="n_splits").reset_index()
    return leaks


def apply_splits(manifest: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """The manifest with a ``split`` column taken from a splits table (by ``sample_id``)."""
    lookup = dict(zip(splits["sample_id"].astype(str), splits["split"], strict=True))
    ids = manifest["sample_id"].astype(str)
    unknown = [i for i in ids if i not in lookup]
    if unknown:
        raise MedilabError(f"splits: sample_id {unknown[0]!r} of the manifest has no split")
    out = manifest.copy()
    out["split"] = [lookup[i] for i in ids]
    return out


def save_splits(splits: pd.DataFrame, path: str | Path) -> Path:
    """Write a splits table as CSV atomically."""
    from medilab.io.atomic import write_csv

    return write_csv(splits, path)


def load_splits(path: str | Path) -> pd.DataFrame:
    """Read a splits CSV written by :func:`save_splits`."""
    path = Path(path)
    table = read_csv_table(path, dtype={"sample_id": str})
    for column in ("sample_id", "split"):
        if column not in table.columns:
            raise InputFileError(
                path, f"missing column {column!r} (has {short_list(table.columns)})"
            )
    return table


def read_manifest(path: str | Path) -> pd.DataFrame:
    """A manifest or metadata CSV read as-is (ids kept as text) for splitting and checks."""
    path = Path(path)
    if path.is_dir() and (path / "metadata.csv").is_file():
        path = path / "metadata.csv"
    table = read_csv_table(path, dtype={"sample_id": str, "patient_id": str})
    if "sample_id" not in table.columns:
        if "image" not in table.columns:
            raise InputFileError(
                path, f"needs a 'sample_id' or an 'image' column (has {short_list(table.columns)})"
            )
        table.insert(0, "sample_id", [Path(str(v)).stem for v in table["image"]])
    return table


def split_file(
    manifest_path: str | Path,
    out: str | Path,
    **options,
) -> pd.DataFrame:
    """Read a manifest CSV, split it (``options`` → :func:`make_splits`; a ``group`` or
    ``stratify`` of "none" means without it), save, return the table.

    Option errors (fractions, folds) are raised before the file is read; errors about the
    table name the CSV file. Raises if the result leaks a group (cannot happen with a group
    column, checked anyway).
    """
    check_fractions(options.get("val", 0.2), options.get("test", 0.0), options.get("folds"))
    table = read_manifest(manifest_path)
    for key in ("group", "stratify"):
        if isinstance(options.get(key), str) and options[key].lower() in ("", "none"):
            options[key] = None  # "none" on the command line: no such column
    try:
        splits = make_splits(table, **options)
    except SplitOptionError:
        raise
    except MedilabError as exc:
        raise InputFileError(
            _csv_path(manifest_path), str(exc).removeprefix("manifest: ")
        ) from None
    group = options.get("group", "patient_id")
    if group:
        leaks = check_leakage(splits, group=group)
        if len(leaks):
            raise MedilabError(f"internal error: {len(leaks)} groups leak across splits")
    save_splits(splits, out)
    return splits


def training_splits(
    table: pd.DataFrame,
    *,
    seed: int,
    val_fraction: float = 0.2,
    val_count: int | None = None,
    test_fraction: float = 0.0,
    given: pd.DataFrame | None = None,
    group: str | None = "patient_id",
    stratify: str | None = "label",
) -> pd.DataFrame:
    """The split a training run uses, for every task: ``sample_id, split[, group][, label]``.

    ``table`` has one row per sample (``sample_id``, and ``label`` / the group column when the
    data has them). A ``given`` splits table (a saved ``splits.csv``, or the data's own split)
    is checked: every id must be in the data and no patient may sit in two splits; its ``test``
    rows are kept, and when it has none and ``test_fraction`` > 0 a test part is held out of its
    ``train`` rows. Otherwise :func:`make_splits` splits anew into train / val (/ test with
    ``test_fraction``): label-stratified, grouped by patient when the column exists, seeded.
    ``val_count`` holds back about that many samples (patients) instead of ``val_fraction``.
    """
    group = group if group and group in table.columns else None
    stratify = stratify if stratify and stratify in table.columns else None
    if stratify:
        _check_class_counts(table[stratify])
    units = table[group].nunique() if group else len(table)
    if given is not None:
        splits = _checked_given_splits(table, given, group)
        if test_fraction > 0 and "test" not in set(splits["split"].astype(str)):
            splits = _hold_out_test(splits, table, test_fraction, units, group, stratify, seed)
    else:
        if val_count is not None:
            if not 0 < val_count < units:
                raise MedilabError(f"data.val_count: {val_count} held back of {units} "
                                   f"{'patients' if group else 'samples'} leaves no training")
            val_fraction = val_count / units
        if val_fraction + test_fraction >= 1.0:
            raise MedilabError(f"data.val_fraction + data.test_fraction must be < 1 (got "
                               f"{val_fraction:g} + {test_fraction:g})")
        splits = make_splits(table, group=group, stratify=stratify, val=val_fraction,
                             test=test_fraction, seed=seed)
    if stratify and stratify not in splits.columns:
        labels = dict(zip(table["sample_id"].astype(str), table[stratify], strict=True))
        splits[stratify] = [labels.get(i) for i in splits["sample_id"].astype(str)]
    return splits


def _hold_out_test(
    splits: pd.DataFrame, table: pd.DataFrame, test_fraction: float, units: int,
    group: str | None, stratify: str | None, seed: int,
) -> pd.DataFrame:
    """``splits`` with about ``test_fraction`` of all samples (patients) moved from ``train`` to
    ``test`` (grouped, stratified, seeded)."""
    train = splits[splits["split"].astype(str) == "train"]
    pool = table.assign(sample_id=table["sample_id"].astype(str)).set_index("sample_id") \
        .loc[train["sample_id"]].reset_index()
    pool_units = pool[group].nunique() if group else len(pool)
    fraction = test_fraction * units / max(pool_units, 1)
    if not 0 < fraction < 1 or pool_units < 3:
        raise MedilabError(f"data.test_fraction {test_fraction:g}: the train part of the given "
                           f"split ({pool_units} {'patients' if group else 'samples'}) is too "
                           "small to hold a test part out of")
    y = _codes(pool[stratify]) if stratify else None
    g = _codes(pool[group]) if group else None
    is_test = _hold_out(len(pool), y, g, fraction, seed)
    moved = set(pool.loc[is_test, "sample_id"])
    split = np.where(splits["sample_id"].astype(str).isin(moved), "test", splits["split"])
    return splits.assign(split=split)


def _check_class_counts(labels: pd.Series) -> None:
    counts = labels.value_counts().sort_index()
    shown = ", ".join(f"{k}: {v}" for k, v in counts.items())
    if len(counts) < 2:
        raise MedilabError(f"training data has a single class ({shown} samples); "
                           "classification needs at least two classes")
    if counts.min() < 2:
        rare = counts[counts < 2].index[0]
        raise MedilabError(f"class {rare!r} has {counts.min()} sample (class counts {shown}); "
                           "every class needs at least 2, one to train on and one to validate")


def _checked_given_splits(
    table: pd.DataFrame, given: pd.DataFrame, group: str | None
) -> pd.DataFrame:
    ids = set(table["sample_id"].astype(str))
    splits = given.assign(sample_id=given["sample_id"].astype(str))
    unknown = splits.loc[~splits["sample_id"].isin(ids), "sample_id"]
    if len(unknown):
        raise MedilabError(f"splits: sample_id {unknown.iloc[0]!r} is not in the data "
                           f"({len(unknown)} unknown; the splits file belongs to other data)")
    if "train" not in set(splits["split"].astype(str)):
        raise MedilabError("splits: no sample is in the 'train' split")
    if group:
        groups = dict(zip(table["sample_id"].astype(str), table[group], strict=True))
        merged = splits.assign(**{group: [groups[i] for i in splits["sample_id"]]})
        leaks = check_leakage(merged, group=group)
        if len(leaks):
            first = leaks.iloc[0]
            raise MedilabError(f"splits: {len(leaks)} patient(s) in more than one split, e.g. "
                               f"{group} {first[group]!r} in {first['splits']}")
        splits = merged
    return splits.reset_index(drop=True)


def check_file(
    path: str | Path, *, split_column: str = "split", group: str = "patient_id"
) -> pd.DataFrame:
    """:func:`check_leakage` of a manifest or splits CSV (see :func:`read_manifest`); errors
    name the file."""
    table = read_manifest(path)
    try:
        return check_leakage(table, split_column=split_column, group=group)
    except MedilabError as exc:
        raise InputFileError(_csv_path(path), str(exc)) from None


def _csv_path(path: str | Path) -> Path:
    path = Path(path)
    return path / "metadata.csv" if path.is_dir() else path
