"""The model card of a run folder (``medilab card``): ``model_card.md`` and
``model_card.html`` with model, data, flow, characteristics, training, performance,
limitations and the CLAIM 2024 / TRIPOD+AI checklists, built from the run's files alone."""

from __future__ import annotations

from pathlib import Path

from medilab.reports.runfiles import require_run_dir


def build_card(run_dir: Path, out: Path | None = None) -> list[Path]:
    """Write the card of one run folder (an ensemble folder included) into ``out`` (default:
    the run folder, beside report.html); returns the Markdown and HTML paths."""
    from medilab.reports.card.build import gather
    from medilab.reports.card.render import write_card

    run_dir = require_run_dir(Path(run_dir))
    out_dir = Path(out) if out is not None else run_dir
    return write_card(gather(run_dir, out_dir), out_dir)
