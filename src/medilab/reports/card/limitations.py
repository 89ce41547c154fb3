"""Limitations a card states on its own, each found in the run's files: no held-out part, a
test part too small for a useful interval, small subgroups, class imbalance, random
initialisation, a single data source, and covariate shift between val and test."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from medilab.reports.card.facts import is_random_init
from medilab.reports.card.performance import interval_width, small_subgroups
from medilab.reports.card.population import DataRows, characteristics, p_text
from medilab.reports.card.runinfo import RunInfo
from medilab.reports.html import format_number
from medilab.runfolder import unfinished_notice

WIDE_INTERVAL = 0.10  # a held-out interval wider than this is too wide to be useful
SMALL_SUBGROUP = 30
SMALL_TEST = 100  # fewer held-out images than this: the interval is not to be trusted
IMBALANCE_RATIO = 3.0  # largest / smallest class in train
SHIFT_ALPHA = 0.05


def find_limitations(info: RunInfo, rows: DataRows, counts: pd.DataFrame) -> list[str]:
    """Every limitation that applies, one sentence each."""
    found = []
    notice = unfinished_notice(info.run_dir)
    if notice:
        found.append("Training did not finish: " + notice.split(": ", 1)[-1] + ".")
    scored = info.metrics.get("splits") or {}
    if scored and "test" not in scored:
        found.append("No held-out test part: the figures are from val, which chose the "
                     "checkpoint (and threshold / temperature), so they are optimistic.")
    width = interval_width(info)
    n_test = (info.metrics.get("n") or {}).get("test")
    if width is not None and (width[2] > WIDE_INTERVAL or (n_test or 0) < SMALL_TEST):
        found.append(f"The test part is small (n = {n_test} images): the interval of "
                     f"{width[1]} is {format_number(width[2])} wide"
                     + (", too wide to tell close models apart." if width[2] > WIDE_INTERVAL
                        else f"; with fewer than {SMALL_TEST} images a bootstrap interval "
                             "understates the uncertainty."))
    small = small_subgroups(info, SMALL_SUBGROUP)
    if small:
        found.append(f"Subgroups with fewer than {SMALL_SUBGROUP} images (their figures are "
                     "unreliable): " + ", ".join(f"{g} on {s} (n = {n})" for s, g, n in small)
                     + ".")
    ratio = _imbalance(counts)
    if ratio is not None and ratio[0] >= IMBALANCE_RATIO:
        found.append(f"Class imbalance: in train the largest class has {ratio[0]:.1f}× the "
                     f"images of the smallest ({ratio[1]}); accuracy alone misleads.")
    if is_random_init(info) and not info.ensemble:
        found.append("The network started from random weights (no pretraining): with little "
                     "data it may learn shortcuts.")
    author = (info.get("card") or {}).get("external_validation")
    if not author:
        found.append(f"A single data source (data.source {info.get('data.source')!r}): every "
                     "partition comes from it; no external test shows how the model "
                     "generalises to other sites or scanners.")
    found += _val_test_shift(rows, info.metrics.get("class_names") or [])
    return found


def _imbalance(counts: pd.DataFrame) -> tuple[float, str] | None:
    if counts.empty or "train" not in set(counts["split"]):
        return None
    row = counts[counts["split"] == "train"].iloc[0]
    classes = {c.removeprefix("class "): int(row[c]) for c in counts.columns
               if c.startswith("class ")}
    if len(classes) < 2 or min(classes.values()) == 0:
        return None
    small = min(classes, key=classes.get)
    return max(classes.values()) / classes[small], small


def _val_test_shift(rows: DataRows, names: list[str]) -> list[str]:
    """Characteristics whose distribution differs between val and test (p < 0.05)."""
    if rows.table is None or not {"val", "test"} <= set(rows.table["split"]):
        return []
    both = replace(rows, table=rows.table[rows.table["split"].isin(["val", "test"])])
    shifted = [f"{c.name} ({c.test} {p_text(c.p_value)})" for c in characteristics(both, names)
               if c.p_value is not None and c.p_value < SHIFT_ALPHA]
    if not shifted:
        return []
    return ["val and test differ in " + ", ".join(shifted) + ": what val chose may not fit "
            "the test population."]
