"""``medilab data verify``: read every sample of a configured dataset once, in parallel, and list
every problem in one table (nnU-Net's dataset integrity check, for every task).

Checked: missing or unreadable files; NaN/inf pixels; image / mask / field-of-view size and
spacing mismatches; mask values outside the classes; images of different sizes where the source
needs one size; labels and box labels outside the classes; boxes without area or outside their
image; NaN covariates; duplicate sample ids and files; patients in two splits (and any other split
error); classes missing from a split. ``fatal`` problems stop or corrupt training; ``warning``
ones deserve a look. Without ``read_files`` only the table is checked (what ``train`` runs before
the first epoch).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medilab.config import ExperimentConfig
from medilab.data.loading import available_cores
from medilab.data.sample_table import SampleTable
from medilab.errors import MedilabError
from medilab.io.messages import one_line, short_list

FATAL, WARNING = "fatal", "warning"
_SPACING_TOLERANCE = 1e-3  # relative difference of two spacings still taken as equal
_MAX_VALUES = 64  # distinct mask values kept per file


@dataclass(frozen=True)
class Problem:
    """One finding: how bad, which check, which sample and file, and what is wrong."""

    severity: str
    check: str
    sample: str
    file: str
    message: str


@dataclass
class VerifyReport:
    """Every problem found, the split × class counts, and what was read."""

    problems: list[Problem]
    samples: int
    files_read: int
    seconds: float
    balance: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def fatal(self) -> bool:
        return any(p.severity == FATAL for p in self.problems)

    def table(self) -> pd.DataFrame:
        """One row per problem (``severity, check, sample, file, message``)."""
        columns = ["severity", "check", "sample", "file", "message"]
        return pd.DataFrame([p.__dict__ for p in self.problems], columns=columns)

    def grouped(self) -> pd.DataFrame:
        """One row per (severity, check): how many samples, and the first one as example."""
        table = self.table()
        if table.empty:
            return pd.DataFrame(columns=["severity", "check", "count", "example"])
        rows = []
        for (severity, check), part in table.groupby(["severity", "check"], sort=False):
            first = part.iloc[0]
            where = first["file"] or first["sample"]
            rows.append({"severity": severity, "check": check, "count": len(part),
                         "example": f"{where}: {first['message']}" if where
                         else first["message"]})
        order = {FATAL: 0, WARNING: 1}
        return pd.DataFrame(rows).sort_values("severity", key=lambda s: s.map(order),
                                              kind="stable").reset_index(drop=True)


def verify_dataset(
    config: ExperimentConfig, *, read_files: bool = True, workers: int | None = None
) -> VerifyReport:
    """Check the dataset ``config.data`` describes; see the module docstring."""
    from medilab.data.sources.base import get_source

    start = time.perf_counter()
    source = get_source(config.data.source)
    try:
        samples = source.sample_table(config, pixels=read_files)
    except MedilabError as exc:  # the table itself cannot be read: that is the one problem
        problem = Problem(FATAL, "unreadable", "", "", str(exc))
        return VerifyReport([problem], 0, 0, time.perf_counter() - start)
    if samples is None:
        return VerifyReport([], 0, 0, time.perf_counter() - start)
    problems = table_problems(samples)
    splits, split_problems = _splits(config, samples)
    problems += split_problems
    files_read = 0
    if read_files:
        refs = _file_refs(samples)
        files_read = len(refs)
        facts = read_facts(refs, workers=workers)
        problems += file_problems(samples, facts)
        if samples.arrays is not None:
            problems += array_problems(samples)
    else:
        problems += missing_files(samples)
    balance = class_balance(samples, splits)
    problems += balance_problems(balance)
    return VerifyReport(problems, len(samples.table), files_read, time.perf_counter() - start,
                        balance)


# ----------------------------------------------------------------------------- table checks
def table_problems(samples: SampleTable) -> list[Problem]:
    """Duplicates, labels outside the classes, box geometry and NaN covariates."""
    table = samples.table
    problems = []
    ids = table["sample_id"].astype(str)
    for sample in ids[ids.duplicated()].unique():
        problems.append(Problem(FATAL, "duplicate id", sample, "",
                                f"sample id listed {int((ids == sample).sum())} times"))
    for column in samples.file_columns[:1]:
        files = table[column].astype(str)
        for name in files[files.duplicated()].unique():
            problems.append(Problem(WARNING, "duplicate file", "", name, f"listed "
                                    f"{int((files == name).sum())} times (the same pixels may "
                                    "sit in two splits)"))
    if samples.classes is not None and "label" in table.columns:
        known = set(samples.classes)
        for sample, label in zip(ids, table["label"], strict=True):
            if pd.notna(label) and str(label) not in known:
                problems.append(Problem(FATAL, "label", sample, "", f"label {str(label)!r} is "
                                        f"not one of the classes {short_list(samples.classes)}"))
    if "label" in table.columns:
        for sample in ids[table["label"].isna().to_numpy()]:
            problems.append(Problem(FATAL, "label", sample, "", "label is missing"))
    if "boxes" in table.columns:
        problems += _box_problems(samples)
    for name in samples.covariates:
        if name not in table.columns:
            problems.append(Problem(FATAL, "covariate", "", "", f"column {name!r} is missing"))
            continue
        values = table[name]
        numeric = pd.to_numeric(values, errors="coerce")
        bad = values.isna() | (numeric.notna() & ~np.isfinite(numeric.fillna(0)))
        for sample in ids[bad.to_numpy()]:
            problems.append(Problem(WARNING, "NaN covariate", sample, "", f"{name} is missing "
                                    "(encoded as missing, with a flag)"))
    return problems


RARE_BOX_LABEL = 3  # a box label on fewer boxes than this, beside common ones, looks like a typo


def _box_problems(samples: SampleTable) -> list[Problem]:
    from medilab.data.datamodules.detection import box_errors

    problems = []
    has_labels = "box_labels" in samples.table.columns
    counts: Counter[str] = Counter()
    first_image: dict[str, tuple[str, str]] = {}
    for _, row in samples.table.iterrows():
        sample, image = str(row["sample_id"]), str(row.get("image", ""))
        if bool(row.get("unlisted", False)):
            problems.append(Problem(FATAL, "box image", sample, image, "has boxes but is not "
                                    "listed in the images table"))
        problems += [Problem(FATAL, "box", sample, image, message)
                     for _, message in box_errors(_boxes(row["boxes"]))]
        labels = [str(n) for n in row["box_labels"]] if has_labels and isinstance(
            row["box_labels"], list | np.ndarray) else []
        counts.update(labels)
        for name in labels:
            first_image.setdefault(name, (sample, image))
        if samples.box_classes is not None:
            for name in sorted(set(labels) - set(samples.box_classes)):
                problems.append(Problem(FATAL, "box label", sample, image, f"box label {name!r} "
                                        f"is not one of data.classes "
                                        f"{short_list(samples.box_classes)}"))
    common = [name for name, n in counts.items() if n >= RARE_BOX_LABEL]
    if samples.box_classes is None and common:
        for name, n in counts.items():
            if n < RARE_BOX_LABEL:
                sample, image = first_image[name]
                problems.append(Problem(WARNING, "rare box label", sample, image, f"box label "
                                        f"{name!r} is on {n} box(es) only, beside "
                                        f"{short_list(sorted(common))}: a typo? List the "
                                        "classes in data.classes to refuse unknown labels"))
    return problems


def _boxes(value: Any) -> np.ndarray:
    """A table's ``boxes`` cell as float ``(N, 4)``."""
    return np.asarray(value if isinstance(value, list | np.ndarray) else [],
                      np.float64).reshape(-1, 4)


def _splits(config: ExperimentConfig, samples: SampleTable
            ) -> tuple[pd.DataFrame | None, list[Problem]]:
    """The split training would use, or the problem that stops it (leakage, one class, …)."""
    from medilab.data.splits import load_splits, training_splits

    options = dict(samples.split_options)
    try:
        if config.data.splits_csv is not None:
            options["given"] = load_splits(config.data.splits_csv)
        splits = training_splits(samples.split_table, seed=config.seed,
                                 val_fraction=config.data.val_fraction,
                                 test_fraction=config.data.test_fraction, **options)
    except MedilabError as exc:
        check = "patients in two splits" if "more than one split" in str(exc) else "split"
        return None, [Problem(FATAL, check, "", "", str(exc))]
    return splits, []


def class_balance(samples: SampleTable, splits: pd.DataFrame | None) -> pd.DataFrame:
    """Samples per split (rows) and class (columns), when the data has labels."""
    if splits is None:
        return pd.DataFrame()
    label_column = "label" if "label" in samples.split_table.columns else None
    split_of = dict(zip(splits["sample_id"].astype(str), splits["split"].astype(str),
                        strict=True))
    labels = (samples.split_table[label_column].astype(str) if label_column
              else pd.Series("all", index=samples.split_table.index))
    frame = pd.DataFrame({
        "split": [split_of.get(str(s), "unused") for s in samples.split_table["sample_id"]],
        "class": labels.map(lambda v: samples.label_names.get(v, v)),
    })
    return pd.crosstab(frame["split"], frame["class"])


def balance_problems(balance: pd.DataFrame) -> list[Problem]:
    """A class with no sample in a split it is scored on (val / test)."""
    problems = []
    for split in balance.index:
        if split in ("train", "unused"):
            continue
        for name in balance.columns[balance.loc[split] == 0]:
            problems.append(Problem(WARNING, "class balance", "", "", f"class {name!r} has no "
                                    f"sample in the {split} split (its recall there is "
                                    "undefined)"))
    return problems


# ----------------------------------------------------------------------------- file checks
def _file_refs(samples: SampleTable) -> list[tuple[str, bool]]:
    """(file, whether its distinct values matter) for every file the table names, once."""
    refs: dict[str, bool] = {}
    for column in samples.file_columns:
        for value in samples.table[column]:
            if isinstance(value, str) and value:
                refs[value] = refs.get(value, False) or column == "mask"
    return list(refs.items())


def read_facts(refs: list[tuple[str, bool]], *, workers: int | None = None
               ) -> dict[str, dict[str, Any]]:
    """:func:`file_facts` of every file, in ``workers`` processes (default: every core)."""
    workers = workers or available_cores()
    if workers <= 1 or len(refs) < 2:
        results: Iterable[dict[str, Any]] = map(_facts_of, refs)
    else:
        pool = ProcessPoolExecutor(max_workers=min(workers, len(refs)))
        chunk = max(1, len(refs) // (workers * 8))
        with pool:
            results = list(pool.map(_facts_of, refs, chunksize=chunk))
    return {ref: facts for (ref, _), facts in zip(refs, results, strict=True)}


def _facts_of(ref_values: tuple[str, bool]) -> dict[str, Any]:
    ref, values = ref_values
    return file_facts(ref, values=values)


def file_facts(ref: str, *, values: bool = False) -> dict[str, Any]:
    """``shape`` (spatial, colour axis dropped), ``spacing``, ``finite`` and (``values``) the
    distinct values of one file; or ``error``, why it cannot be read."""
    from medilab.data.formats.pixels import read_array, read_image

    try:
        if "::" in ref:
            array, spacing = np.asarray(read_array(ref)), None
        else:
            image = read_image(ref)
            array, spacing = np.asarray(image.array), image.spacing
    except MedilabError as exc:
        return {"error": str(exc).removeprefix(f"{ref}: ")}
    except Exception as exc:  # noqa: BLE001 - any decoder failure is an unreadable file
        return {"error": f"cannot read ({one_line(exc)})"}
    shape = array.shape
    if array.ndim == 3 and shape[-1] in (3, 4):
        shape = shape[:2]
    facts: dict[str, Any] = {
        "shape": tuple(int(s) for s in shape),
        "spacing": tuple(float(s) for s in spacing[: len(shape)]) if spacing else None,
        "finite": bool(np.isfinite(array).all()) if array.dtype.kind in "fc" else True,
    }
    if values:
        distinct = np.unique(array[..., 0] if array.ndim == 3 and array.shape[-1] in (3, 4)
                             else array)
        facts["values"] = [float(v) for v in distinct[:_MAX_VALUES]]
        facts["distinct"] = int(distinct.size)
    return facts


def file_problems(samples: SampleTable, facts: dict[str, dict[str, Any]]) -> list[Problem]:
    """Unreadable files, NaN/inf pixels, size/spacing mismatches, mask values, image sizes."""
    problems = []
    sizes: Counter[tuple[int, ...]] = Counter()
    for _, row in samples.table.iterrows():
        sample = str(row["sample_id"])
        image = _facts(row, "image", facts)
        for column in samples.file_columns:
            ref, found = row[column], _facts(row, column, facts)
            if found is None:
                continue
            if "error" in found:
                problems.append(Problem(FATAL, "unreadable", sample, ref, found["error"]))
                continue
            if not found["finite"]:
                problems.append(Problem(FATAL, "NaN/inf pixels", sample, ref,
                                        "holds NaN or infinite values"))
            if column != "image" and image is not None and "error" not in image:
                problems += _pair_problems(sample, ref, found, row["image"], image)
            if column == "mask":
                problems += _mask_problems(sample, ref, found, samples.mask_classes)
        if image is not None and "error" not in image:
            sizes[image["shape"]] += 1
            if "boxes" in row.index:
                problems += _boxes_outside(sample, row, image["shape"])
    if samples.same_size and len(sizes) > 1:
        common = sizes.most_common(1)[0][0]
        for _, row in samples.table.iterrows():
            image = _facts(row, "image", facts)
            if image and "error" not in image and image["shape"] != common:
                problems.append(Problem(FATAL, "image size", str(row["sample_id"]),
                                        row["image"], f"size {_size(image['shape'])} differs "
                                        f"from most images' {_size(common)} (set a resize)"))
    return problems


def _facts(row: pd.Series, column: str, facts: dict[str, dict[str, Any]]
           ) -> dict[str, Any] | None:
    value = row.get(column)
    return facts.get(value) if isinstance(value, str) and value else None


def _pair_problems(sample: str, ref: str, found: dict[str, Any], image_ref: str,
                   image: dict[str, Any]) -> list[Problem]:
    problems = []
    if found["shape"] != image["shape"]:
        problems.append(Problem(FATAL, "size mismatch", sample, ref, f"size "
                                f"{_size(found['shape'])} differs from its image "
                                f"{Path(image_ref).name} ({_size(image['shape'])})"))
    elif found["spacing"] and image["spacing"] and not np.allclose(
            found["spacing"], image["spacing"], rtol=_SPACING_TOLERANCE):
        problems.append(Problem(FATAL, "spacing mismatch", sample, ref, f"spacing "
                                f"{_spacing(found['spacing'])} differs from its image's "
                                f"{_spacing(image['spacing'])}"))
    return problems


def _mask_problems(sample: str, ref: str, found: dict[str, Any], classes: int | None
                   ) -> list[Problem]:
    values = found.get("values", [])
    if classes is not None and classes > 2:
        outside = [v for v in values if v < 0 or v >= classes or v != int(v)]
        if outside:
            return [Problem(FATAL, "mask values", sample, ref, f"values {_values(outside)} "
                            f"outside the classes 0..{classes - 1}")]
    elif classes == 2 and found.get("distinct", 0) > 2:
        return [Problem(WARNING, "mask values", sample, ref, f"{found['distinct']} distinct "
                        f"values ({_values(values)}) in a binary mask: every value > 0 counts "
                        "as foreground (lossy compression?)")]
    return []


def _boxes_outside(sample: str, row: pd.Series, shape: tuple[int, ...]) -> list[Problem]:
    """Boxes that are sound on their own (see ``_box_problems``) but leave their image."""
    from medilab.data.datamodules.detection import box_errors

    boxes = _boxes(row["boxes"])
    outside = [e for e in box_errors(boxes, shape[:2]) if e not in box_errors(boxes)]
    return [Problem(FATAL, "box outside image", sample, str(row["image"]), message)
            for _, message in outside]


def missing_files(samples: SampleTable) -> list[Problem]:
    """Files the table names that do not exist (the cheap check: nothing is read)."""
    problems = []
    for _, row in samples.table.iterrows():
        for column in samples.file_columns:
            ref = row[column]
            if isinstance(ref, str) and ref and not Path(ref.split("::")[0]).exists():
                problems.append(Problem(FATAL, "unreadable", str(row["sample_id"]), ref,
                                        "file not found"))
    return problems


def array_problems(samples: SampleTable) -> list[Problem]:
    """NaN/inf pixels of in-memory sources, one row per sample."""
    assert samples.arrays is not None
    arrays = samples.arrays.reshape(len(samples.arrays), -1)
    if arrays.dtype.kind not in "fc":
        return []
    bad = ~np.isfinite(arrays).all(axis=1)
    return [Problem(FATAL, "NaN/inf pixels", str(sample), "", "holds NaN or infinite values")
            for sample in samples.table["sample_id"][bad]]


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _spacing(spacing: tuple[float, ...]) -> str:
    return "x".join(f"{s:g}" for s in spacing)


def _values(values: list[float]) -> str:
    return short_list([f"{v:g}" for v in values])


def check_before_training(config: ExperimentConfig) -> None:
    """The cheap part of :func:`verify_dataset` (no pixel decoded): a fatal problem is a
    one-line error, each kind of warning one warning line."""
    import warnings

    report = verify_dataset(config, read_files=False)
    grouped = report.grouped()
    for row in grouped.itertuples():
        text = (f"data check: {row.check}: {row.example}" if row.count == 1
                else f"data check: {row.check} ({row.count}×), e.g. {row.example}")
        if row.severity == FATAL:
            raise MedilabError(f"{text}; `medilab data verify` lists every problem")
        warnings.warn(text, stacklevel=2)
