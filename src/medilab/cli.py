"""The ``medilab`` command line: parse, call the library, print. No logic lives here."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from medilab.errors import MedilabError, storage_error_line

app = typer.Typer(
    help="medilab: train, evaluate, explain and compare deep-learning models for medical images.",
    epilog="Environment: MEDILAB_PRECISION=32-true (or any Lightning precision) is what "
           "trainer.precision: auto picks on every machine; MEDILAB_DEBUG=1 shows tracebacks; "
           "MEDILAB_VERBOSE=1 keeps Lightning's own messages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: flags show as --resume / --no-resume
)

RunDir = Annotated[Path, typer.Argument(help="A run folder made by `medilab train`.")]


def _print_version(value: bool) -> None:
    if value:
        from medilab.version import package_version

        typer.echo(package_version())
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True,
                           help="Print the version and exit.")
    ] = False,
) -> None:
    """medilab: train, evaluate, explain and compare models for medical images."""


@app.command()
def train(
    config: Annotated[
        Path | None, typer.Argument(help="Experiment YAML (optional with --resume).")
    ] = None,
    override: Annotated[
        list[str] | None,
        typer.Option("--override", "-o", help="KEY.SUB=VALUE, e.g. -o trainer.max_epochs=30."),
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Run folder (default runs/<experiment>/<timestamp>).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --run-dir from checkpoints/last.ckpt.")
    ] = False,
    evaluate: Annotated[
        bool, typer.Option(help="Evaluate the best checkpoint and write the report after.")
    ] = True,
    seeds: Annotated[
        int | None, typer.Option(help="Seed ensemble: train seeds 0..N-1 into RUN/seed<s> and "
                                      "make RUN their ensemble (= -o trainer.seeds=[0,…]).")
    ] = None,
) -> None:
    """Train an experiment; the run folder gets config, splits, checkpoints, metrics, report."""
    from medilab import api
    from medilab.runfolder import read_status
    from medilab.training_summary import summary_lines

    folder = api.train(config, override or [], run_dir, resume=resume, evaluate_after=evaluate,
                       seeds=seeds)
    training = (read_status(folder) or {}).get("training")
    report = folder / "report.html"
    for line in summary_lines(training, str(report) if report.is_file() else None
                              ) if training else []:  # extra DDP processes: the folder only
        typer.echo(line)
    typer.echo(f"run folder: {folder}")


@app.command("evaluate")
def evaluate_command(
    run_dir: RunDir,
    checkpoint: Annotated[str, typer.Option(help="best or last")] = "best",
) -> None:
    """Evaluate a run: metrics.json (95% bootstrap intervals), predictions, plots, report and
    model card."""
    from medilab import api

    metrics = api.evaluate(run_dir, checkpoint=checkpoint)
    _print_metrics(metrics)
    typer.echo(f"report: {run_dir / 'report.html'}")
    typer.echo(f"model card: {run_dir / 'model_card.html'}")


def _print_metrics(metrics: dict) -> None:
    from medilab.runfolder import ordered_splits, role_label

    for split in ordered_splits(metrics):
        values = metrics["splits"][split]
        shown = ", ".join(f"{name} {v['value']:.4f}" for name, v in values.items())
        typer.echo(f"{split} ({role_label(split)}): {shown}")
    if metrics.get("headline_note"):
        typer.echo(f"note: {metrics['headline_note']}")


@app.command()
def predict(
    run_dir: RunDir,
    inputs: Annotated[Path, typer.Argument(help="New data: a pixel CSV, image(s) or a folder.")],
    out: Annotated[Path, typer.Option("--out", help="Output file or folder.")],
    checkpoint: Annotated[str, typer.Option(help="best or last")] = "best",
    probabilities: Annotated[
        bool, typer.Option(help="Segmentation: also write per-pixel foreground probabilities.")
    ] = False,
    fov: Annotated[
        Path | None, typer.Option(help="Segmentation: folder of field-of-view masks (default: "
                                       "estimated from each image when the run used one).")
    ] = None,
    min_score: Annotated[
        float, typer.Option(help="Detection: keep boxes scoring at least this.")
    ] = 0.05,
    engine: Annotated[
        str, typer.Option(help="torch (the run's precision), or onnxruntime (fp32; "
                               "classification: runs the model `medilab export` wrote last, "
                               "or --model).")
    ] = "torch",
    model: Annotated[
        Path | None, typer.Option("--model", help="With --engine onnxruntime: the exported "
                                                  ".onnx file to run.")
    ] = None,
    image_dir: Annotated[
        Path | None, typer.Option(help="Classification CSV input: the folder its image "
                                       "column is relative to (default: beside the CSV, or "
                                       "its images/ folder).")
    ] = None,
) -> None:
    """Predict new data with a trained run (digits: submission CSV; segmentation: masks).
    Inputs that cannot be used are listed with their reason; none usable is an error."""
    from medilab import api

    written = api.predict(
        run_dir, inputs, out, checkpoint=checkpoint, probabilities=probabilities, fov=fov,
        min_score=min_score, engine=engine, image_dir=image_dir, model=model,
    )
    typer.echo(f"wrote {written}")


@app.command("export")
def export_command(
    run_dir: RunDir,
    fmt: Annotated[str, typer.Option("--format", help="onnx or torchscript")] = "onnx",
    out: Annotated[
        Path | None, typer.Option("--out", help="File to write (default RUN/export/model.onnx "
                                                "or model.pt).")
    ] = None,
    checkpoint: Annotated[str, typer.Option(help="best or last")] = "best",
    tolerance: Annotated[
        float, typer.Option(help="Largest allowed probability difference from PyTorch.")
    ] = 1e-4,
) -> None:
    """Export a classification or segmentation model (ONNX for onnxruntime, or TorchScript),
    checked against PyTorch (classification: validation samples when the run's data is here,
    else random inputs of the run's shape); refused, with no file left, above the tolerance."""
    from medilab import api

    result = api.export(run_dir, fmt, out, checkpoint=checkpoint, tolerance=tolerance)
    typer.echo(f"max abs probability difference vs PyTorch: {result.max_abs_diff:.2e} on "
               f"{result.checked_on} (tolerance {result.tolerance:.0e})")
    typer.echo(f"precision: {result.precision_line()}")
    typer.echo(f"wrote {result.path}")


@app.command()
def explain(
    run_dir: RunDir,
    inputs: Annotated[list[Path], typer.Argument(
        help="Image file(s): one or more files, folders or tables.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the overlay PNGs.")],
    method: Annotated[str, typer.Option(help="gradcam, eigencam or ablationcam (detectors: "
                                             "eigencam, ablationcam).")] = "eigencam",
    target_class: Annotated[
        int | None, typer.Option(help="Class to explain (default: the predicted one).")
    ] = None,
    save_raw: Annotated[bool, typer.Option("--save-raw", help="Also write each map as .npy.")
                        ] = False,
    checkpoint: Annotated[str, typer.Option(help="best or last")] = "best",
    min_score: Annotated[
        float | None, typer.Option(help="Detection: explain the boxes scoring at least this "
                                        "(default 0.5); with none, ablationcam falls back to "
                                        "eigencam and names the file so.")
    ] = None,
) -> None:
    """Where the model looks: one CAM overlay PNG per input, at the input's size."""
    from medilab import api

    options: dict[str, object] = {"save_raw": save_raw}
    if target_class is not None:
        options["target_class"] = target_class
    if min_score is not None:
        options["min_score"] = min_score
    written = api.explain(run_dir, list(inputs), out, method, checkpoint=checkpoint,
                          **options)
    typer.echo(f"wrote {len(written)} overlay(s) to {out}")


@app.command()
def ensemble(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run folders to combine.")],
    run_dir: Annotated[Path, typer.Option(help="New folder for the ensemble.")],
    checkpoint: Annotated[str, typer.Option(help="best or last, for every member")] = "best",
) -> None:
    """Average the probabilities of finished runs (same task and held-out samples) and evaluate
    the ensemble like a run; predict/report then work on its folder."""
    from medilab import api

    metrics = api.ensemble(runs, run_dir, checkpoint=checkpoint)
    _print_metrics(metrics)
    typer.echo(f"report: {run_dir / 'report.html'}")


@app.command()
def crossval(
    config: Annotated[Path, typer.Argument(help="Experiment YAML.")],
    folds: Annotated[int, typer.Option(help="Number of folds (K).")],
    run_dir: Annotated[Path, typer.Option(help="Folder for fold0..fold<K-1> and the summary.")],
    override: Annotated[
        list[str] | None,
        typer.Option("--override", "-o", help="KEY.SUB=VALUE, e.g. -o trainer.max_epochs=30."),
    ] = None,
    fold: Annotated[
        int | None, typer.Option("--fold", help="Train and evaluate only this fold (0..K-1), "
                                                "e.g. $SLURM_ARRAY_TASK_ID; no summary.")
    ] = None,
    assemble_only: Annotated[
        bool, typer.Option("--assemble-only", help="Train nothing: summarise the folds that "
                                                   "other processes finished (else list the "
                                                   "missing ones).")
    ] = False,
) -> None:
    """K-fold cross-validation: train and evaluate one run per held-out fold (grouped by patient,
    stratified by label), then the mean over folds. Run it again to continue after a stop.
    With --fold K one process trains one fold (a job array on a shared file system); the plain
    command then assembles the summary, training only the folds still missing."""
    from medilab import api

    if fold is not None:
        if assemble_only:
            raise MedilabError("--fold trains one fold, --assemble-only trains none: give one")
        folder = api.crossval_fold(config, folds, run_dir, fold, override or [])
        typer.echo(f"fold {fold} of {folds} is trained and evaluated: {folder} (the command "
                   "without --fold assembles the summary once every fold is done)")
        return
    summary = api.crossval(config, folds, run_dir, override or [], assemble_only=assemble_only)
    for name, value in summary["metrics"].items():
        typer.echo(f"{name}: {value['weighted_mean']:.4f} (fold mean {value['mean']:.4f} "
                   f"± {value['std']:.4f})")
    typer.echo(f"{summary['folds']} folds, {summary['n']} held-out samples: {run_dir}")


def _seconds(text: str | None) -> float | None:
    """``90s`` / ``60m`` / ``2h`` (or plain seconds) as seconds; None stays None."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise MedilabError(f"--timeout {text!r}: expected e.g. 90s, 60m or 2h") from None
    if value <= 0:
        raise MedilabError(f"--timeout {text!r}: must be above 0")
    return value


@app.command()
def tune(
    config: Annotated[Path, typer.Argument(help="Experiment YAML.")],
    out: Annotated[Path, typer.Option("--out", help="Tune folder: trials/, storage, page.")],
    trials: Annotated[int, typer.Option(help="Trials in all (complete + pruned).")],
    space: Annotated[
        Path | None, typer.Option(help="Search space YAML (default: the config's tune: section).")
    ] = None,
    timeout: Annotated[
        str | None, typer.Option(help="Start no trial after this long, e.g. 60m or 2h.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Local processes sharing the trials.")] = 1,
    storage: Annotated[
        str | None, typer.Option(help="Optuna RDB URL (postgresql://…, sqlite:///…) shared by "
                                      "workers on several machines; default a journal file "
                                      "in --out.")
    ] = None,
    worker_only: Annotated[
        bool, typer.Option("--worker-only", help="Only run trials (one SLURM array task); the "
                                                 "plain command then scores the best and writes "
                                                 "the page.")
    ] = False,
    cv: Annotated[
        int | None, typer.Option("--cv", help="Score each trial by K-fold cross-validation on "
                                              "the non-test samples (K runs per trial; the "
                                              "best is trained again on the whole split).")
    ] = None,
    override: Annotated[
        list[str] | None,
        typer.Option("--override", "-o", help="KEY.SUB=VALUE for every trial."),
    ] = None,
) -> None:
    """Search hyperparameters with Optuna (TPE, pruning): each trial is a run folder under
    OUT/trials (with --cv K, K fold runs); the best is scored once on the held-out test part;
    tune.csv and tune.html. Run the same command again to continue after a stop."""
    from medilab import api

    body = api.tune(config, out, trials, space, override or [], timeout_s=_seconds(timeout),
                    workers=workers, storage=storage, worker_only=worker_only, cv=cv)
    best = body.get("best")
    if best:
        selection = best.get("selection", "val, selection")
        typer.echo(f"best trial {best['number']}: {best['monitor']} {best['value']:.4f} "
                   f"({selection}) {best['params']}")
    if not worker_only:
        typer.echo(f"page: {out / 'tune.html'}")


@app.command()
def study(
    study_file: Annotated[Path, typer.Argument(help="Study YAML (base config + members).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the members and the summary.")],
    override: Annotated[
        list[str] | None,
        typer.Option("--override", "-o", help="KEY.SUB=VALUE for every member."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Train again the members whose saved config differs "
                                           "from the request (else such a rerun is refused).")
    ] = False,
    member: Annotated[
        str | None, typer.Option("--member", help="Train and evaluate only this member (its "
                                                  "name, or its index 0, 1, … in the file, e.g. "
                                                  "$SLURM_ARRAY_TASK_ID); no study page.")
    ] = None,
    assemble_only: Annotated[
        bool, typer.Option("--assemble-only", help="Train nothing: build the page from the "
                                                   "members other processes finished (else "
                                                   "list the missing ones).")
    ] = False,
) -> None:
    """Train and compare several models the same way (Lab 3: single / early / late / 3D):
    one run folder per member, summary.csv, paired tests and study.html. Run again to continue.
    With --member NAME one process trains one member (a job array on a shared file system);
    the plain command then builds the page, training only the members still missing."""
    from medilab import api

    if member is not None:
        if assemble_only:
            raise MedilabError("--member trains one member, --assemble-only trains none: give "
                               "one")
        folder = api.study_member(study_file, out, member, override or [], force=force)
        typer.echo(f"member {folder.name} is trained and evaluated: {folder} (the command "
                   "without --member builds the study page once every member is done)")
        return
    summary = api.study(study_file, out, override or [], force=force,
                        assemble_only=assemble_only)
    names = summary.attrs.get("metrics", [])
    for row in summary.to_dict("records"):
        values = "  ".join(f"{name} {row[name]:.4f}" for name in names)
        typer.echo(f"{row['member']:<12} {row['split']:<5} {values}  (n={row['n']})")
    typer.echo(f"page: {out / 'study.html'}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's data, run and outputs.")] = Path(
        "demo_output"
    ),
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 30,
) -> None:
    """Lab 1 end to end on scikit-learn's shipped digits: train, evaluate, submission, report."""
    from medilab.demo import run_demo

    result = run_demo(out, epochs=epochs)
    typer.echo(f"held-out test accuracy: {result.test_accuracy:.4f} ({result.n_test} digits)")
    typer.echo(f"submission: {result.submission}")
    typer.echo(f"report:     {result.report}")


# ----------------------------------------------------------------------------- data: split, info
class _SplitGroup(typer.core.TyperGroup):
    """``medilab split MANIFEST ...`` runs ``make``; ``medilab split check ...`` runs ``check``."""

    def parse_args(self, ctx, args):  # noqa: ANN001, ANN201 - click's signature
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["make", *args]
        return super().parse_args(ctx, args)


split_app = typer.Typer(cls=_SplitGroup, no_args_is_help=True,
                        help="Split a manifest by patient (default command) or check for leakage.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets.")
app.add_typer(split_app, name="split")
app.add_typer(data_app, name="data")


@split_app.command("make")
def split_make(
    manifest: Annotated[Path, typer.Argument(help="Manifest / metadata CSV (or its folder).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="splits.csv to write.")],
    group: Annotated[str, typer.Option(help="Patient column ('none': no grouping).")] = (
        "patient_id"
    ),
    stratify: Annotated[str, typer.Option(help="Label column ('none': not stratified).")] = "label",
    val: Annotated[float, typer.Option(help="Validation fraction.")] = 0.2,
    test: Annotated[float, typer.Option(help="Test fraction held out first.")] = 0.0,
    folds: Annotated[int | None, typer.Option(help="K folds instead of train/val.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
) -> None:
    """Split a manifest (stratified, grouped by patient, seeded) into a splits CSV."""
    from medilab.data.splits import split_file

    splits = split_file(manifest, out, group=group, stratify=stratify, val=val, test=test,
                        folds=folds, seed=seed)
    counts = splits["split"].value_counts().sort_index()
    typer.echo(", ".join(f"{name}: {n}" for name, n in counts.items()) + f" -> {out}")


@split_app.command("check")
def split_check(
    manifest: Annotated[Path, typer.Argument(help="Manifest or splits CSV.")],
    split_column: Annotated[str, typer.Option(help="Column holding the split.")] = "split",
    group: Annotated[str, typer.Option(help="Patient column.")] = "patient_id",
) -> None:
    """List patients found in more than one split; exit code 1 if there are any."""
    from medilab.data.splits import check_file

    leaks = check_file(manifest, split_column=split_column, group=group)
    for row in leaks.itertuples(index=False):
        typer.echo(f"{row[0]}\t{row.splits}\t{row.n_samples} samples")
    typer.echo(f"{len(leaks)} {group} value(s) in more than one {split_column!r} split")
    if len(leaks):
        raise typer.Exit(1)


@data_app.command("info")
def data_info(
    path: Annotated[Path, typer.Argument(help="MedMNIST .npz, folder + metadata.csv, CSV, "
                                              "or DICOM folder.")],
) -> None:
    """Show what a dataset holds: samples per split and label, shapes, value range, patients."""
    from rich.console import Console
    from rich.table import Table

    from medilab.data.info import dataset_info

    table = Table("field", "value", title=str(path))
    for name, value in dataset_info(path).rows():
        table.add_row(name, value)
    Console().print(table)


VERIFY_LISTED = 50  # problems listed one per row; more are grouped by kind


def _wide_console() -> object:
    """A rich Console whose tables wrap long cells on a terminal and, off one (CI logs,
    ``| tee``), are as wide as their content: a file path is never cut."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=100_000)


@data_app.command("verify")
def data_verify(
    config: Annotated[Path, typer.Argument(help="Experiment YAML whose data section to check.")],
    override: Annotated[
        list[str] | None, typer.Option("--override", "-o", help="KEY.SUB=VALUE")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes reading files (default: every core).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Also write every problem, one row each, to this CSV.")
    ] = None,
) -> None:
    """Read every sample once and list every problem in one table (grouped by kind above 50;
    --out lists every one); exit 1 when one is fatal."""
    from rich.table import Table

    from medilab import api

    report = api.verify_data(config, override or [], workers=workers, out=out)
    console = _wide_console()
    if not report.balance.empty:
        balance = Table("split", *map(str, report.balance.columns), title="samples per class")
        for split, counts in report.balance.iterrows():
            balance.add_row(str(split), *map(str, counts))
        console.print(balance)
    every = report.table().sort_values("severity", key=lambda s: s != "fatal", kind="stable")
    if 0 < len(every) <= VERIFY_LISTED:
        problems = Table("severity", "check", title="problems")
        problems.add_column("file or sample", overflow="fold")
        problems.add_column("problem", overflow="fold")
        for row in every.itertuples():
            problems.add_row(row.severity, row.check, row.file or row.sample or "–", row.message)
        console.print(problems)
    elif len(every):
        problems = Table("severity", "check", "count", title="problems (by kind; every one "
                         "with --out FILE)")
        problems.add_column("example", overflow="fold")
        for row in report.grouped().itertuples():
            problems.add_row(row.severity, row.check, str(row.count), row.example)
        console.print(problems)
    typer.echo(f"{report.samples} samples, {report.files_read} files read in "
               f"{report.seconds:.1f} s: {len(report.problems)} problem(s), "
               f"{'fatal' if report.fatal else 'none fatal'}"
               + (f"; every problem in {out}" if out is not None else ""))
    if report.fatal:
        raise typer.Exit(1)


dicom_app = typer.Typer(help="DICOM utilities.", no_args_is_help=True)
app.add_typer(dicom_app, name="dicom")


@dicom_app.command("convert")
def dicom_convert(
    src: Annotated[Path, typer.Argument(help="Folder tree of DICOM files.")],
    dst: Annotated[Path, typer.Argument(help="Output folder (PNGs, manifest.csv, errors.csv).")],
    log: Annotated[bool, typer.Option("--log", help="Log transform.")] = False,
    color_balance: Annotated[
        float | None,
        typer.Option("--color-balance", metavar="PCT", help="Simplest color balance: saturate "
                     "PCT % of pixels in total (half at each end)."),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(metavar="NAME|C,W", help="Window preset (lung, mediastinum, soft_tissue, "
                     "bone, brain, liver) or CENTER,WIDTH; default: the file's first VOI."),
    ] = None,
    size: Annotated[
        int | None, typer.Option(metavar="N", help="Resize to NxN keeping aspect (padded).")
    ] = None,
    bits: Annotated[int, typer.Option(help="PNG bit depth: 8 or 16.")] = 8,
    workers: Annotated[int, typer.Option(help="Parallel worker processes.")] = 1,
    salt: Annotated[
        str | None, typer.Option(help="Salt for patient keys (random per run when omitted).")
    ] = None,
    pseudonymise_paths: Annotated[
        bool, typer.Option("--pseudonymise-paths", help="Name PNGs by a salted hash of the "
                           "source path (flat) instead of mirroring folders.")
    ] = False,
) -> None:
    """Convert DICOM files under SRC to PNG under DST (same folders), with a PHI-free
    manifest.csv; unreadable files go to errors.csv. Re-running skips finished files.
    Exit code 0 when every file converted or was already done, 1 when any file failed,
    2 on invalid options or a missing SRC."""
    from medilab.io.convert import ConvertOptions, convert_tree

    options = ConvertOptions(
        log=log, color_balance=color_balance, window=window, size=size, bits=bits,
        workers=workers, salt=salt, pseudonymise_paths=pseudonymise_paths,
    )
    with warnings.catch_warnings():  # printed below as one line each
        warnings.simplefilter("ignore", UserWarning)
        summary = convert_tree(src, dst, options)
    typer.echo(summary.describe())
    typer.echo(f"manifest: {summary.manifest}")
    if summary.salt_file:
        typer.echo(f"note: no --salt given; patient keys use the private salt in "
                   f"{summary.salt_file} (reused on re-runs; keep it private)")
    for warning in summary.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if summary.identifiers_in_paths:
        typer.echo(
            f"warning: {summary.identifiers_in_paths} source paths contain a patient ID or name, "
            "and so do their mirrored outputs; consider --pseudonymise-paths", err=True,
        )
    if summary.failed:
        typer.echo(f"errors:   {summary.errors}", err=True)
        raise typer.Exit(1)


weights_app = typer.Typer(help="Pretrained weights, offline.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")


@weights_app.command("import")
def weights_import(
    file: Annotated[Path, typer.Argument(help="A torchvision weight file, e.g. "
                                              "resnet50-11ad3fa6.pth (hash checked), or with "
                                              "--model a timm model's model.safetensors.")],
    model: Annotated[
        str | None, typer.Option("--model", help="The timm model the file is for (swin: "
                                                 "medilab's default Swin-T).")
    ] = None,
) -> None:
    """Check a weight file (its hash against its name; a timm file: readable) and place it
    where `weights: imagenet` (or coco) looks, in the local weights cache."""
    from medilab.models.weights import import_weights

    typer.echo(f"imported: {import_weights(file, model)}")


@weights_app.command("list")
def weights_list() -> None:
    """Which pretrained weight files medilab knows, and which are available offline."""
    from rich.table import Table

    from medilab.models.weights import list_weights

    table = Table("model", "weights", "available")
    table.add_column("path", overflow="fold")
    for row in list_weights():
        table.add_row(str(row["model"] or "–"), str(row["weights"] or "–"),
                      "yes" if row["available"] else "no", str(row["path"]))
    _wide_console().print(table)


@app.command()
def report(run_dir: RunDir) -> None:
    """Rebuild a run folder's report.html (and its plots) from the files in it; for a
    crossval or study folder, its summary page (compare.html / study.html) and every run's."""
    from medilab import api

    typer.echo(f"report: {api.write_report(run_dir)}")


@app.command()
def card(
    run_dir: RunDir,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for model_card.md / .html (default: "
                                                "the run folder, beside report.html).")
    ] = None,
) -> None:
    """Write the model card of a run folder: model_card.md and model_card.html with the
    participant flow, characteristics by partition, held-out figures, limitations and the
    CLAIM 2024 / TRIPOD+AI checklists; a study or crossval folder gets one per member too."""
    from medilab import api

    for path in api.write_card(run_dir, out):
        typer.echo(f"card: {path}")


@app.command()
def compare(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Run folders (an experiment folder: its latest run).")
    ],
    out: Annotated[Path, typer.Option("--out", help="The comparison page (.html).")],
    split: Annotated[
        str | None, typer.Option(help="Which split's metrics to compare (default: the held-out "
                                      "test when every run has one, else val).")
    ] = None,
    metric: Annotated[
        str | None, typer.Option(help="Main metric for curves and bars (default: auto).")
    ] = None,
) -> None:
    """Compare run folders: metrics table with intervals, curves, ROC curves, CSV."""
    from medilab.reports.compare import compare_runs

    typer.echo(compare_runs(run_dirs, out, split=split, metric=metric))


@app.command()
def version() -> None:
    """Print medilab's version."""
    from importlib.metadata import version as package_version

    typer.echo(package_version("medilab"))


def one_line_warnings() -> None:
    """Print warnings as ``warning: <message>``, one line on stderr (no source location)."""

    def format_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
        text = " ".join(str(message).split())
        return f"warning: {text}\n"

    warnings.formatwarning = format_warning


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors with exit code 2 (a MedilabError, or an output that cannot
    be written: full disk, read-only or permission-denied folder); ``--debug`` shows the
    traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("MEDILAB_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    command = typer.main.get_command(app)
    if not debug:
        one_line_warnings()
    try:
        command.main(args=args, prog_name="medilab")  # click handles usage errors (exit 2)
    except MedilabError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # full disk, read-only or permission-denied output: the user's side
        line = storage_error_line(exc)
        if debug or line is None:
            raise
        typer.echo(f"error: {line}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)

if __name__ == "__main__":
    main()
