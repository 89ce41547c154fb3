"""The ``medilab`` command line: parse, call the library, print. No logic lives here."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from medilab.errors import MedilabError

app = typer.Typer(
    help="medilab: train, evaluate, explain and compare deep-learning models for medical images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RunDir = Annotated[Path, typer.Argument(help="A run folder made by `medilab train`.")]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
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
) -> None:
    """Train an experiment; the run folder gets config, splits, checkpoints, metrics, report."""
    from medilab import api

    if config is None and not resume:
        raise typer.BadParameter("give an experiment YAML, or --resume with --run-dir")
    folder = api.train(
        config or Path(), override or [], run_dir, resume=resume, evaluate_after=evaluate
    )
    typer.echo(f"run folder: {folder}")


@app.command("evaluate")
def evaluate_command(
    run_dir: RunDir,
    checkpoint: Annotated[str, typer.Option(help="best or last")] = "best",
) -> None:
    """Evaluate a run: metrics.json (95% bootstrap intervals), predictions, plots, report."""
    from medilab import api

    metrics = api.evaluate(run_dir, checkpoint=checkpoint)
    for split, values in metrics["splits"].items():
        shown = ", ".join(f"{name} {v['value']:.4f}" for name, v in values.items())
        typer.echo(f"{split}: {shown}")
    typer.echo(f"report: {run_dir / 'report.html'}")


@app.command()
def predict(
    run_dir: RunDir,
    inputs: Annotated[Path, typer.Argument(help="New data: a pixel CSV, image(s) or a folder.")],
    out: Annotated[Path, typer.Option("--out", help="Output file or folder.")],
    checkpoint: Annotated[str, typer.Option(help="best or last")] = "best",
    probabilities: Annotated[
        bool, typer.Option(help="Segmentation: also write per-pixel foreground probabilities.")
    ] = False,
) -> None:
    """Predict new data with a trained run (digits: submission CSV; segmentation: masks)."""
    from medilab import api

    written = api.predict(
        run_dir, inputs, out, checkpoint=checkpoint, probabilities=probabilities
    )
    typer.echo(f"wrote {written}")


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


@app.command()
def version() -> None:
    """Print medilab's version."""
    from importlib.metadata import version as package_version

    typer.echo(package_version("medilab"))


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors with exit code 2; ``--debug`` shows the traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("MEDILAB_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    command = typer.main.get_command(app)
    try:
        command.main(args=args, prog_name="medilab")  # click handles usage errors (exit 2)
    except MedilabError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)

if __name__ == "__main__":
    main()
