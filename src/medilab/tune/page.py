"""A tune's outputs for a person: ``tune.csv`` (one row per trial) and ``tune.html`` (the best
trial's selection and held-out figures, and Optuna's matplotlib plots, embedded offline)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402
from optuna.visualization import matplotlib as optuna_plots  # noqa: E402

from medilab.io.atomic import atomic_path, write_csv  # noqa: E402
from medilab.reports.html import data_uri, format_number, render_page  # noqa: E402
from medilab.runfolder import HELD_OUT_ROLE, METRICS_FILE  # noqa: E402
from medilab.tune.cv import fold_std  # noqa: E402

CSV_FILE = "tune.csv"
PAGE_FILE = "tune.html"
PLOTS_DIR = "plots"


def trial_rows(trials: list[FrozenTrial], folds: int | None = None) -> pd.DataFrame:
    """number, state, value, with ``--cv`` K ``fold0..fold<K-1>`` (each fold run's best val
    value; ``value`` is their mean) and ``fold_std``, one ``param:KEY`` column per searched key,
    run_dir, note."""
    rows = []
    for trial in sorted(trials, key=lambda t: t.number):
        row: dict[str, Any] = {"number": trial.number, "state": trial.state.name,
                               "value": trial.value if trial.state == TrialState.COMPLETE
                               else None}
        if folds:
            values = list(trial.user_attrs.get("fold_values", []))
            row.update({f"fold{k}": values[k] if k < len(values) else None
                        for k in range(folds)})
            row["fold_std"] = fold_std(values)
        row.update({f"param:{key}": value for key, value in trial.params.items()})
        row["run_dir"] = trial.user_attrs.get("run_dir", "")
        row["note"] = _note(trial)
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["number", "state", "value", "run_dir",
                                                          "note"])


def _note(trial: FrozenTrial) -> str:
    attrs = trial.user_attrs
    if attrs.get("surplus"):
        return "surplus: another worker had already started the last trial (no run)"
    if attrs.get("stale"):
        return "its worker stopped or was killed; its parameters were tried again"
    if attrs.get("retry_of") is not None:
        return f"tries again the parameters of trial {attrs['retry_of']}"
    return str(attrs.get("error", attrs.get("pruned", "")))


def write_page(out: Path, study: optuna.Study, request: dict[str, Any],
               best: dict[str, Any] | None) -> Path:
    """tune.csv, the plots and tune.html in ``out``; ``best`` is tune.json's best trial."""
    trials = study.get_trials(deepcopy=False)
    table = trial_rows(trials, request.get("cv"))
    write_csv(table, out / CSV_FILE)
    held_out, selection = _best_figures(out, best)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    states = table["state"].value_counts().to_dict() if len(table) else {}
    context = {
        "name": request.get("experiment", out.name),
        "request": request,
        "states": states,
        "best": best,
        "selection": selection,
        "held_out": held_out,
        "held_out_role": HELD_OUT_ROLE,
        "rows": _shown_rows(table),
        "columns": [c for c in table.columns if c != "note"],
        "figures": _figures(out, study, complete, len(request.get("space", {}))),
    }
    return render_page("tune.html", out / PAGE_FILE, **context)


def _shown_rows(table: pd.DataFrame) -> list[dict[str, str]]:
    shown = []
    for row in table.to_dict("records"):
        shown.append({key: (format_number(value) if isinstance(value, float) else
                            "" if value is None else str(value)) for key, value in row.items()})
    return shown


def _best_figures(out: Path, best: dict[str, Any] | None
                  ) -> tuple[list[dict[str, str]], dict[str, Any] | None]:
    """The best trial's held-out metrics (metrics.json of its held-out run, split ``test``) and
    its selection figure (the monitored val metric that chose it; with ``--cv`` its mean over
    folds and their standard deviation)."""
    if not best:
        return [], None
    selection = {"monitor": best.get("monitor"), "value": format_number(best.get("value")),
                 "std": format_number(best["std"]) if "std" in best else ""}
    path = out / best.get("held_out_run_dir", best["run_dir"]) / METRICS_FILE
    if not path.is_file():
        return [], selection
    splits = json.loads(path.read_text(encoding="utf-8")).get("splits", {})
    held = splits.get("test", {})
    return [{"metric": name, "value": format_number(entry.get("value")),
             "low": format_number(entry.get("low")), "high": format_number(entry.get("high"))}
            for name, entry in held.items() if isinstance(entry, dict)], selection


def _figures(out: Path, study: optuna.Study, complete: list[FrozenTrial],
             searched: int) -> list[dict[str, str]]:
    """Optuna's optimisation history, parameter importances (2+ complete trials, 2+ keys) and
    parallel coordinates, as PNGs under ``out/plots`` embedded in the page; a plot Optuna
    cannot draw is listed with its reason."""
    plots = [("optimization history", "tune_history.png", optuna_plots.plot_optimization_history)]
    if len(complete) >= 2 and searched > 1:
        plots.append(("parameter importances (fANOVA)", "tune_importances.png",
                      optuna_plots.plot_param_importances))
    if complete:
        plots.append(("parallel coordinates", "tune_parallel.png",
                      optuna_plots.plot_parallel_coordinate))
    figures = []
    for title, name, plot in plots:
        path = out / PLOTS_DIR / name
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's "experimental" notices
                axes = plot(study)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
            figure.set_size_inches(7, 4.5)
            figure.tight_layout()
            with atomic_path(path) as tmp:
                figure.savefig(tmp, format="png", dpi=110)
            plt.close(figure)
        except Exception as exc:  # noqa: BLE001 - a plot that fails leaves a note, not a crash
            plt.close("all")
            figures.append({"title": title, "src": "", "error": f"{type(exc).__name__}: {exc}"})
            continue
        figures.append({"title": title, "src": data_uri(path) or "", "error": "",
                        "href": f"{PLOTS_DIR}/{name}"})
    return figures
