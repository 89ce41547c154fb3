"""Write a gathered card as ``model_card.md`` and ``model_card.html`` (the report's look,
offline: the flow diagram is embedded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medilab.io.atomic import write_text
from medilab.reports.card.build import TO_SUPPLY
from medilab.reports.card.population import p_text
from medilab.reports.html import data_uri, format_number, render_page

CARD_MD = "model_card.md"
CARD_HTML = "model_card.html"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(map(_cell, header)) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in rows]
    return lines + [""]


def counts_rows(card: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The per-split counts table (header, rows)."""
    counts = card["counts"]
    if counts.empty:
        return [], []
    header = list(counts.columns)
    rows = [[str(int(v)) if isinstance(v, int | float) else str(v) for v in row]
            for row in counts.itertuples(index=False)]
    return header, rows


def characteristic_rows(card: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per characteristic level / statistic, a column per partition, and the test."""
    traits = card["characteristics"]
    if not traits:
        return [], []
    splits = list(dict.fromkeys(s for t in traits for _, cells in t.rows for s in cells))
    rows = []
    for trait in traits:
        for k, (level, cells) in enumerate(trait.rows):
            test = f"{trait.test}, {p_text(trait.p_value)}" if k == 0 else ""
            rows.append([trait.name if k == 0 else "", level,
                         *[cells.get(s, "–") for s in splits], test])
    return ["characteristic", "level", *splits, "difference between partitions"], rows


def markdown(card: dict[str, Any], flow_link: str | None) -> str:
    """The card as Markdown."""
    out = [f"# Model card: {card['experiment']}", "",
           f"Run folder `{card['run_name']}`; card built {card['built']} by medilab from the "
           "run folder's files alone (nothing here was typed by hand except the author's "
           "fields).", ""]
    out += ["## Model", ""] + md_table(["fact", "value"], [list(r) for r in card["model"]])
    if card["ensemble"]:
        out += ["Ensemble members:", ""] + [f"- `{m}`" for m in card["ensemble"]] + [""]
    out += ["## Data", ""]
    if card["data_note"]:
        out += [f"Note: {card['data_note']}", ""]
    header, rows = counts_rows(card)
    if header:
        out += ["Counts per partition (from splits.csv):", ""] + md_table(header, rows)
    out += ["### How the split was made", ""] + [f"- {line}" for line in card["split_method"]]
    if card["deidentification"]:
        out += ["", "### De-identification", ""] + [f"- {line}" for line in
                                                    card["deidentification"]]
    out += ["", "### Participant flow", ""]
    flow = card["flow"]
    if flow is not None:
        if flow_link:
            out += [f"![participant flow]({flow_link})", ""]
        out += [f"- rows read: {flow.rows_read}; excluded: {flow.excluded}"
                + (f" ({'; '.join(flow.reasons)})" if flow.reasons else "")]
        out += [f"- {split}: {images} images" + (f", {patients} patients" if patients
                                                  is not None else "")
                for split, (images, patients) in flow.partitions.items()] + [""]
    header, rows = characteristic_rows(card)
    if header:
        out += ["### Characteristics by partition", ""] + md_table(header, rows)
    out += ["## Training", ""] + md_table(["fact", "value"], [list(r) for r in card["training"]])
    if card["fitted"]:
        out += ["Fitted on val:", ""] + [f"- {line}" for line in card["fitted"]] + [""]
    out += ["## Performance", ""]
    confidence = f"{100 * float(card['confidence']):g}%"
    for table in card["metric_tables"]:
        size = f" (n = {table['n']})" if table["n"] is not None else ""
        title = f"{table['split']}{size}: {table['role']}"
        out += [f"### {'**' + title + '**' if table['headline'] else title}", ""]
        out += md_table(["metric", f"value [{confidence} CI]"], [list(t) for t in table["texts"]])
    if not card["metric_tables"]:
        out += ["No metrics.json yet: run `medilab evaluate` on the run folder.", ""]
    for section, key in (("Notes", "metric_notes"), ("Operating point and calibration",
                                                     "operating"),
                         ("Subgroups", "subgroups"), ("Worst cases", "worst")):
        if card[key]:
            out += [f"### {section}", ""] + [f"- {line}" for line in card[key]] + [""]
    out += ["## Limitations found in the run", ""]
    out += [f"- {line}" for line in card["limitations"]] or ["- none found automatically"]
    out += ["", "## Author's part", ""]
    out += md_table(["field", "text"], [[name, text or TO_SUPPLY] for name, text in
                                      card["author"]])
    for title, key in (("CLAIM 2024 checklist", "claim"), ("TRIPOD+AI checklist", "tripod")):
        out += [f"## {title}", ""]
        out += md_table(["item", "topic", "status", "where in the card"],
                      [[r["number"], r["topic"], r["status"], r["where"]] for r in card[key]])
    return "\n".join(out).rstrip() + "\n"


def write_card(card: dict[str, Any], out_dir: Path) -> list[Path]:
    """``out_dir/model_card.md`` and ``model_card.html``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = card["flow_png"]
    link = Path(png).relative_to(out_dir).as_posix() if png else None
    md = write_text(out_dir / CARD_MD, markdown(card, link))
    counts_header, counts = counts_rows(card)
    traits_header, traits = characteristic_rows(card)
    html = render_page(
        "card.html", out_dir / CARD_HTML, card=card, to_supply=TO_SUPPLY,
        flow_uri=data_uri(png) if png else None, flow_href=link,
        counts_header=counts_header, counts=counts,
        traits_header=traits_header, traits=traits,
        confidence=f"{100 * float(card['confidence']):g}%", number=format_number)
    return [md, html]
