"""Gather one run folder's card: every section's facts, the flow diagram, limitations and the
two checklists, as one mapping the renderer writes as Markdown and HTML."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medilab.config import CardConfig
from medilab.reports.card import checklists, facts, flow, limitations, performance, population
from medilab.reports.card.runinfo import RunInfo, read_run

TO_SUPPLY = "to be supplied by the author"


def author_fields(info: RunInfo) -> list[tuple[str, str | None]]:
    """Every ``card:`` field with the author's text, None where not supplied."""
    given = info.get("card") or {}
    return [(name, str(given[name]).strip() if given.get(name) else None)
            for name in CardConfig.model_fields]


def gather(run_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Everything the card of ``run_dir`` shows; the flow diagram is drawn under ``out_dir``."""
    info = read_run(run_dir)
    rows = population.data_rows(info)
    counts = population.split_counts(info)
    names = (info.metrics.get("class_names") or []) if info.task == "classification" else []
    traits = population.characteristics(rows, names)
    flow_numbers = flow.flow_counts(info, rows)
    flow_png = flow.draw_flow(flow_numbers, out_dir / flow.FLOW_FILE) if flow_numbers else None
    tables = performance.metric_tables(info)
    worst = performance.worst_cases(info)
    found = limitations.find_limitations(info, rows, counts)
    author = author_fields(info)
    run_facts = _run_facts(info, counts, traits, flow_numbers, tables, worst, found)
    supplied = {name for name, text in author if text}
    members = [str(m) for m in info.ensemble.get("members") or []]
    return {
        "experiment": info.metrics.get("experiment") or info.config.get("experiment")
        or run_dir.parent.name,
        "run_name": run_dir.name,
        "built": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "model": facts.model_facts(info),
        "ensemble": members,
        "data_note": rows.note,
        "counts": counts,
        "split_method": population.split_method(info),
        "deidentification": facts.deidentification_lines(info),
        "flow": flow_numbers,
        "flow_png": flow_png,
        "characteristics": traits,
        "training": facts.training_facts(info),
        "fitted": facts.fitted_on_val(info) if info.metrics else [],
        "metric_tables": tables,
        "confidence": info.metrics.get("confidence", 0.95),
        "metric_notes": [str(n) for n in info.metrics.get("notes") or []]
        + ([str(info.metrics["headline_note"])] if info.metrics.get("headline_note") else []),
        "operating": performance.operating_point(info) + performance.baseline_lines(info),
        "subgroups": performance.subgroup_lines(info),
        "worst": worst,
        "limitations": found,
        "author": author,
        "claim": checklists.checklist_rows(checklists.CLAIM, run_facts, supplied),
        "tripod": checklists.checklist_rows(checklists.TRIPOD_AI, run_facts, supplied),
    }


def _run_facts(info: RunInfo, counts: Any, traits: list, flow_numbers: Any,
               tables: list, worst: list, found: list) -> set[str]:
    """Which :data:`~medilab.reports.card.checklists.RUN_FACTS` this card holds."""
    have = {"limitations"} if found else set()
    if info.model_json or info.ensemble:
        have |= {"model", "input"}
    if (info.status.get("environment") or {}).get("versions"):
        have.add("software")
    if info.get("model.kwargs") is not None:
        have.add("init")
    have.add("ensemble")  # the card says whether the model is an ensemble
    if info.get("optimizer"):
        have.add("training")
    if info.get("trainer.monitor"):
        have.add("selection")
    if info.fitted:
        have.add("fitted")
    if facts.deidentification_lines(info):
        have.add("deid")
    if info.splits is not None:
        have.add("split")
        if "patient_id" in info.splits:
            have.add("disjoint")
    if not counts.empty:
        have.add("counts")
    if flow_numbers is not None:
        have.add("flow")
    if any(t.name != "label" for t in traits):
        have.add("characteristics")
    if tables:
        have.add("metrics")
        if any(any(r[2] == r[2] for r in t["rows"]) for t in tables):  # a finite low bound
            have.add("intervals")
    if "test" in (info.metrics.get("splits") or {}):
        have.add("heldout")
    if info.metrics.get("calibration"):
        have.add("calibration")
    if info.metrics.get("subgroups"):
        have |= {"subgroups", "robustness"}
    if worst:
        have.add("worst")
    if info.metrics.get("class_names"):
        have.add("classes")
    if list((info.run_dir / "plots").glob("**/*cam*.png")):
        have.add("explain")
    return have
