"""The card of a folder that groups runs (a study's members, a cross-validation's folds): one
card per member, and the group's own card listing each member's held-out figures with their
intervals and a link to the member's card."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from medilab.io.atomic import write_text
from medilab.reports.card import build_card
from medilab.reports.card.performance import metric_tables
from medilab.reports.card.render import CARD_HTML, CARD_MD, md_table
from medilab.reports.card.runinfo import read_run
from medilab.reports.html import render_page
from medilab.reports.runfiles import read_csv


def member_rows(members: dict[str, Path], folder: Path) -> list[dict[str, Any]]:
    """Per member: model, headline split, n, metric texts and the link to its card."""
    rows = []
    for name, member_dir in members.items():
        info = read_run(member_dir)
        tables = metric_tables(info)
        head = next((t for t in tables if t["headline"]), tables[0] if tables else None)
        rows.append({
            "member": name,
            "model": info.model_json.get("name") or info.get("model.name") or "–",
            "split": head["split"] if head else "–",
            "role": head["role"] if head else "not evaluated",
            "n": head["n"] if head else "–",
            "metrics": "; ".join(f"{m} {t}" for m, t in head["texts"]) if head else "–",
            "card": (member_dir / CARD_HTML).relative_to(folder).as_posix(),
            "card_md": (member_dir / CARD_MD).relative_to(folder).as_posix(),
        })
    return rows


def build_group_card(folder: Path, members: dict[str, Path], kind: str,
                     comparisons: Path | None = None) -> list[Path]:
    """A card for every member, then ``folder/model_card.md`` and ``.html`` for the group
    (``kind``: ``study`` or ``cross-validation``); ``comparisons``: the study's paired.csv."""
    folder = Path(folder)
    written = [path for member_dir in members.values() for path in build_card(member_dir)]
    rows = member_rows(members, folder)
    paired = read_csv(comparisons) if comparisons is not None else None
    pairs = [] if paired is None or paired.empty else [
        {"split": r.get("split"), "pair": f"{r.get('a')} − {r.get('b')}",
         "difference": _num(r.get("auroc_difference")), "p_holm": _num(r.get("p_holm"))}
        for r in paired.to_dict("records")]
    notes = ["Each member has its own card (model, data, flow, characteristics, training, "
             "checklists); this page lists their headline figures side by side."]
    if kind == "cross-validation":
        notes.append("Each fold's figures are from its outer fold, untouched by what its inner "
                     "val chose; the folds together cover every non-test sample once.")
    built = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    md = [f"# Model card: {kind} {folder.name}", "", f"Card built {built} by medilab from the "
          "member run folders' files.", ""] + [f"- {n}" for n in notes] + [""]
    md += md_table(["member", "model", "split", "n", "metrics [95% CI]", "card"],
                 [[r["member"], r["model"], f"{r['split']} ({r['role']})", r["n"], r["metrics"],
                   f"[{r['card_md']}]({r['card_md']})"] for r in rows])
    if pairs:
        md += ["## Paired AUROC comparisons", ""]
        md += md_table(["split", "pair", "AUROC difference", "p (Holm)"],
                     [[p["split"], p["pair"], p["difference"], p["p_holm"]] for p in pairs])
    written.append(write_text(folder / CARD_MD, "\n".join(md).rstrip() + "\n"))
    written.append(render_page("card_group.html", folder / CARD_HTML, name=folder.name,
                               kind=kind, built=built, notes=notes, rows=rows, pairs=pairs))
    return written


def _num(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if pd.isna(number) else f"{number:.3f}"
