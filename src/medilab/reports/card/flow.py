"""The participant flow diagram (CLAIM item 33): rows the data source read → rows left out
(with the reason when known) → the images and patients of each partition, as a PNG whose
numbers are splits.csv's."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from medilab.io.atomic import atomic_path
from medilab.reports.card.population import DataRows, ordered
from medilab.reports.card.runinfo import RunInfo

FLOW_FILE = "plots/card_flow.png"


@dataclass
class FlowCounts:
    """The numbers of the diagram: rows read, rows left out, and per partition
    ``(images, patients or None)``."""

    rows_read: int
    patients_read: int | None
    excluded: int
    reasons: list[str] = field(default_factory=list)
    partitions: dict[str, tuple[int, int | None]] = field(default_factory=dict)


def flow_counts(info: RunInfo, rows: DataRows) -> FlowCounts | None:
    """The flow from splits.csv (and the data's own row count when it could be read)."""
    splits = info.splits
    if splits is None or splits.empty:
        return None
    has_patients = "patient_id" in splits
    partitions = {}
    for split in ordered(list(splits["split"].astype(str))):
        part = splits[splits["split"].astype(str) == split]
        partitions[split] = (len(part), int(part["patient_id"].nunique()) if has_patients
                             else None)
    read = rows.rows_read if rows.rows_read is not None else len(splits)
    excluded = max(read - len(splits), 0)
    reasons = []
    if excluded:
        reasons.append("not in splits.csv (left out when the split was made or reused)")
    patients = int(splits["patient_id"].nunique()) if has_patients else None
    if rows.table is not None and excluded and "patient_id" in rows.table:
        patients = None  # patients of the left-out rows are not known from splits.csv
    return FlowCounts(read, patients, excluded, reasons, partitions)


def flow_text(counts: FlowCounts) -> str:
    """The diagram's numbers as JSON (kept in the PNG's Description chunk, for checks)."""
    return json.dumps({"rows_read": counts.rows_read, "excluded": counts.excluded,
                       "partitions": {s: {"images": i, "patients": p}
                                      for s, (i, p) in counts.partitions.items()}})


def _people(images: int, patients: int | None) -> str:
    return f"{images} images" + (f"\n{patients} patients" if patients is not None else "")


def draw_flow(counts: FlowCounts, out: Path) -> Path:
    """Boxes and arrows: read → (excluded) → included → one box per partition."""
    n = len(counts.partitions)
    width = max(6.0, 2.2 * n)
    fig = Figure(figsize=(width, 4.6))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, 4.6)
    ax.axis("off")
    box = {"boxstyle": "round,pad=0.4", "facecolor": "#f5f7fa", "edgecolor": "#2b5fad"}
    centre = width / 2
    top = "data rows read\n" + _people(counts.rows_read, counts.patients_read)
    ax.text(centre, 4.1, top, ha="center", va="center", bbox=box, fontsize=10)
    included = sum(images for images, _ in counts.partitions.values())
    patients = [p for _, p in counts.partitions.values()]
    total_patients = sum(p for p in patients if p is not None) \
        if patients and all(p is not None for p in patients) else None
    ax.text(centre, 2.55, "included\n" + _people(included, total_patients), ha="center",
            va="center", bbox=box, fontsize=10)
    arrow = {"arrowstyle": "->", "color": "#5c6577"}
    ax.annotate("", xy=(centre, 2.95), xytext=(centre, 3.65), arrowprops=arrow)
    excluded = f"excluded: {counts.excluded} rows"
    if counts.reasons:
        excluded += "\n" + "\n".join(counts.reasons)
    ax.text(centre + 0.25, 3.3, excluded, ha="left", va="center", fontsize=8.5,
            bbox={**box, "facecolor": "#fff4e5", "edgecolor": "#d97706"})
    step = width / (n + 1)
    for k, (split, (images, pats)) in enumerate(counts.partitions.items(), start=1):
        x = k * step
        ax.annotate("", xy=(x, 1.2), xytext=(centre, 2.15), arrowprops=arrow)
        ax.text(x, 0.75, f"{split}\n" + _people(images, pats), ha="center", va="center",
                bbox=box, fontsize=10)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110,
                    metadata={"Title": "participant flow", "Description": flow_text(counts)})
    return out
