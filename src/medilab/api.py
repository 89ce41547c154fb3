"""The Python API: what the CLI does, callable from Python (``from medilab import train``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medilab import run
from medilab.config import ExperimentConfig
from medilab.errors import MedilabError
from medilab.reports.report import build_report


def train(
    config: ExperimentConfig | str | Path | None,
    overrides: list[str] | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    evaluate_after: bool = True,
    seeds: int | None = None,
) -> Path:
    """Train, then evaluate the best checkpoint and write the report; return the run folder.
    With ``trainer.seeds`` (or ``seeds=N``: seeds 0..N-1) one member run per seed is trained
    and evaluated into ``<run folder>/seed<s>`` and the run folder is their ensemble
    (:mod:`medilab.seeds`); ``resume`` (or the same command) continues a stopped one."""
    from medilab import seeds as seed_runs
    from medilab.runfolder import load_run_config

    overrides = [*(overrides or []), *([f"trainer.seeds={list(range(seeds))}"] if seeds else [])]
    if seeds is not None and seeds < 2:
        raise MedilabError(f"--seeds {seeds}: a seed ensemble needs two or more seeds")
    if resume and seed_runs.is_seeds_folder(run_dir):
        assert run_dir is not None
        resolved = load_run_config(Path(run_dir), overrides)
    else:
        resolved = None if resume or config is None else run.resolve_config(config, overrides)
    if resolved is not None and resolved.trainer.seeds:
        folder = seed_runs.train_seeds(resolved, run_dir, evaluate=evaluate)
        if evaluate_after:
            evaluate(folder)
        return folder
    folder = run.train(config, overrides=overrides, run_dir=run_dir, resume=resume)
    if evaluate_after and run.is_primary_process():
        evaluate(folder)
    return folder


def group_folder_notice(folder: str | Path, command: str) -> None:
    """A study or cross-validation folder given where one run folder is needed: a one-line
    error naming what it is and what to run instead."""
    from medilab import crossval, study, tune
    from medilab.errors import MedilabError
    from medilab.runfolder import CONFIG_FILE

    folder = Path(folder)
    if not folder.is_dir() or (folder / CONFIG_FILE).is_file():
        return
    if (folder / study.STUDY_FILE).is_file() or (folder / study.SUMMARY_FILE).is_file():
        members = sorted(p.name for p in folder.iterdir() if (p / CONFIG_FILE).is_file())
        raise MedilabError(
            f"{folder}: a study folder, not a run folder; {command} one member "
            f"(`medilab {command} {folder / (members[0] if members else '<member>')} …`; "
            f"members: {', '.join(members) or 'none yet'}), or rebuild the study's pages with "
            f"`medilab report {folder}`")
    if (folder / tune.TUNE_FILE).is_file():
        raise MedilabError(
            f"{folder}: a tune folder, not a run folder; {command} one trial "
            f"(`medilab {command} {folder / 'trials' / '<NNNN>'} …`; tune.json names the best), "
            f"or rebuild its page with `medilab report {folder}`")
    if (folder / crossval.FOLDS_FILE).is_file():
        raise MedilabError(
            f"{folder}: a cross-validation folder, not a run folder; {command} one fold "
            f"(`medilab {command} {folder / 'fold0'} …`), or rebuild its pages with "
            f"`medilab report {folder}`")


def evaluate(run_dir: str | Path, checkpoint: str = "best") -> dict[str, Any]:
    """metrics.json, predictions_<split>.csv, plots and report.html for a run folder."""
    group_folder_notice(run_dir, "evaluate")
    metrics = run.evaluate(run_dir, checkpoint=checkpoint)
    write_report(run_dir)
    return metrics


def predict(
    run_dir: str | Path, inputs: str | Path, out: str | Path, **options: Any
) -> Path:
    """Predict new inputs with a trained run. A failed prediction leaves no new empty folder."""
    group_folder_notice(run_dir, "predict")
    out = Path(out)
    existed = out.exists()
    try:
        return run.predict(run_dir, inputs, out, **options)
    except BaseException:
        if not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def explain(
    run_dir: str | Path, inputs: str | Path | list[str | Path], out: str | Path,
    method: str = "eigencam", **options: Any,
) -> list[Path]:
    """CAM overlay PNGs of ``inputs`` (a file, folder or table, or a list of them) in the
    folder ``out``."""
    group_folder_notice(run_dir, "explain")
    several = inputs if isinstance(inputs, list | tuple) else [inputs]
    return [path for item in several
            for path in run.explain(run_dir, item, out, method, **options)]


def ensemble(
    members: list[str | Path], run_dir: str | Path, checkpoint: str = "best",
    experiment: str | None = None,
) -> dict[str, Any]:
    """Combine finished runs into an ensemble run folder (mean of their probabilities) and
    evaluate it like a run: metrics.json, predictions, report."""
    from medilab.ensemble import create_ensemble

    folder = create_ensemble(members, run_dir, checkpoint=checkpoint, experiment=experiment)
    return evaluate(folder)


def crossval(
    config: ExperimentConfig | str | Path,
    folds: int,
    run_dir: str | Path,
    overrides: list[str] | None = None,
    assemble_only: bool = False,
) -> dict[str, Any]:
    """K-fold cross-validation into ``run_dir/fold<k>`` (each evaluated, with its report), the
    summary over folds (crossval.json / .csv, predictions_oof.csv) and compare.html. Folds
    finished by :func:`crossval_fold` processes are kept; with ``assemble_only`` none is
    trained here (a missing one is a one-line error listing them)."""
    from medilab.crossval import cross_validate

    summary = cross_validate(config, folds, run_dir, overrides, evaluate=evaluate,
                             assemble_only=assemble_only)
    _compare_folds(Path(run_dir), folds)
    write_card(run_dir)
    return summary


def crossval_fold(
    config: ExperimentConfig | str | Path,
    folds: int,
    run_dir: str | Path,
    fold: int,
    overrides: list[str] | None = None,
) -> Path:
    """Train and evaluate one fold of a K-fold cross-validation (one task of a job array on a
    shared file system) into ``run_dir/fold<fold>``; :func:`crossval` assembles the summary."""
    from medilab.crossval import train_fold

    return train_fold(config, folds, run_dir, fold, overrides, evaluate=evaluate)


def _compare_folds(folder: Path, folds: int) -> Path:
    """``folder/compare.html``: the folds of a cross-validation side by side."""
    from medilab.crossval import fold_dirs
    from medilab.reports.compare import compare_runs

    return compare_runs(fold_dirs(folder, folds), folder / "compare.html")


def study(
    study_file: str | Path, out: str | Path, overrides: list[str] | None = None,
    force: bool = False, assemble_only: bool = False,
) -> Any:
    """Train and evaluate every member of a study file into ``out``; summary.csv, paired.csv,
    predictions/<member>.csv and study.html. Run again to continue after a stop; a member
    trained with another config is refused, or trained again with ``force``. Members finished
    by :func:`study_member` processes are kept; with ``assemble_only`` none is trained here."""
    from medilab.study import run_study

    result = run_study(study_file, out, overrides, evaluate=evaluate, force=force,
                       assemble_only=assemble_only)
    write_card(out)
    return result


def study_member(
    study_file: str | Path, out: str | Path, member: str,
    overrides: list[str] | None = None, force: bool = False,
) -> Path:
    """Train and evaluate one member of a study (by name or index; one task of a job array on
    a shared file system) into ``out/<member>``; :func:`study` assembles the page."""
    from medilab.study import train_member

    return train_member(study_file, out, member, overrides, evaluate=evaluate, force=force)


def tune(
    config: ExperimentConfig | str | Path, out: str | Path, trials: int,
    space: str | Path | None = None, overrides: list[str] | None = None, **options: Any,
) -> dict[str, Any]:
    """Search hyperparameters with Optuna (``medilab tune``): ``trials`` trials, each a run
    folder under ``out/trials``; the best one evaluated (metrics.json, report) and
    tune.csv / tune.html written. Options: ``timeout_s``, ``workers``, ``storage``,
    ``worker_only``, ``cv`` (K-fold cross-validated trials). Run again to continue after a
    stop."""
    from medilab.tune import tune as run_tune

    return run_tune(config, out, trials, space, overrides, evaluate=evaluate, **options)


def export(
    run_dir: str | Path, fmt: str = "onnx", out: str | Path | None = None,
    checkpoint: str = "best", tolerance: float = 1e-4,
) -> Any:
    """Export a classification / segmentation run's model to ONNX or TorchScript (default
    ``RUN/export/model.onnx`` / ``model.pt``) after a probability parity check against PyTorch;
    returns an :class:`~medilab.export.ExportResult` (path, max_abs_diff)."""
    from medilab.export import export_run

    group_folder_notice(run_dir, "export")
    return export_run(run_dir, fmt, out, checkpoint=checkpoint, tolerance=tolerance)


def write_report(run_dir: str | Path) -> Path:
    """Build report.html (and its plots) from the run folder's files. A cross-validation
    folder gets its fold reports, summary and compare.html again; a study folder its member
    reports, summary and study.html."""
    from medilab import crossval, study, tune

    folder = Path(run_dir)
    if (folder / tune.TUNE_FILE).is_file():
        return tune.rebuild(folder)
    if (folder / crossval.FOLDS_FILE).is_file():
        folds = crossval.fold_count(folder)
        for fold_dir in crossval.fold_dirs(folder, folds):
            build_report(fold_dir)
        crossval.summarize(folder, folds)
        page = _compare_folds(folder, folds)
        write_card(folder)
        return page
    if (folder / study.STUDY_FILE).is_file() or (folder / study.SUMMARY_FILE).is_file():
        for member_dir in sorted(p for p in folder.iterdir() if (p / study.MEMBER_FILE).is_file()):
            build_report(member_dir)
        page = study.rebuild(folder)
        write_card(folder)
        return page
    page = build_report(folder)
    write_card(folder)
    return page


def write_card(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """model_card.md and model_card.html of a run folder (into ``out``, default the run
    folder); a study or cross-validation folder gets one card per member plus its own.
    Returns the files written."""
    from medilab import crossval, study
    from medilab.errors import MedilabError
    from medilab.reports.card import build_card
    from medilab.reports.card.group import build_group_card

    folder = Path(run_dir)
    if not folder.is_dir():
        raise MedilabError(f"{folder}: run folder not found")
    fold_file = folder / crossval.FOLDS_FILE
    is_study = (folder / study.SUMMARY_FILE).is_file() or (folder / study.STUDY_FILE).is_file()
    if fold_file.is_file() or is_study:
        if out is not None:
            raise MedilabError(f"{folder}: --out is for one run folder; a study or "
                               "cross-validation folder's cards are written inside it")
        if fold_file.is_file():
            dirs = crossval.fold_dirs(folder, crossval.fold_count(folder))
            members = {d.name: d for d in dirs if d.is_dir()}
            return build_group_card(folder, members, "cross-validation")
        members = {p.name: p for p in sorted(folder.iterdir())
                   if (p / study.MEMBER_FILE).is_file()}
        return build_group_card(folder, members, "study", folder / study.PAIRED_FILE)
    if not any((folder / name).is_file() for name in ("config.yaml", "metrics.json")) \
            and not any((p / "config.yaml").is_file() for p in folder.iterdir() if p.is_dir()):
        raise MedilabError(f"{folder}: not a run folder (no config.yaml or metrics.json)")
    return build_card(folder, Path(out) if out is not None else None)


def verify_data(
    config: ExperimentConfig | str | Path, overrides: list[str] | None = None, *,
    workers: int | None = None, out: str | Path | None = None,
) -> Any:
    """Read every sample of the config's dataset once and return every problem found
    (:class:`medilab.data.verify.VerifyReport`); ``out``: also write them to a CSV."""
    from medilab.config import check_data_paths, load_config
    from medilab.data.verify import verify_dataset
    from medilab.io.atomic import write_csv

    if not isinstance(config, ExperimentConfig):
        config = load_config(config, overrides or [])
    check_data_paths(config)
    report = verify_dataset(config, workers=workers)
    if out is not None:
        write_csv(report.table(), out)
    return report
