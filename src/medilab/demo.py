"""`medilab demo`: Lab 1 end to end on digits that ship inside scikit-learn."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from medilab import api
from medilab.config import load_config
from medilab.io.atomic import write_csv


@dataclass
class DemoResult:
    run_dir: Path
    submission: Path
    report: Path
    test_accuracy: float
    n_test: int


def write_digits_csvs(folder: Path, test_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Kaggle-layout ``train.csv`` and unlabelled ``test.csv`` from scikit-learn's digits.

    Returns the held-out test labels (the answer key for ``test.csv``).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = digits.images.reshape(len(digits.images), -1).astype(int)
    columns = [f"pixel{i}" for i in range(pixels.shape[1])]
    train_x, test_x, train_y, test_y = train_test_split(
        pixels, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    train = pd.DataFrame(train_x, columns=columns)
    train.insert(0, "label", train_y)
    for name, frame in (("train.csv", train), ("test.csv", pd.DataFrame(test_x, columns=columns))):
        write_csv(frame, folder / name)
    return np.asarray(test_y)


def demo_config_path() -> Path:
    """The packaged demo experiment."""
    return Path(str(resources.files("medilab") / "configs" / "demo_digits.yaml"))


def run_demo(out: Path, epochs: int = 30) -> DemoResult:
    """Train SimpleNN, evaluate with intervals, write a Kaggle submission and the report."""
    out = Path(out)
    answers = write_digits_csvs(out / "data")
    config = load_config(
        demo_config_path(),
        [f"data.train_csv={out / 'data' / 'train.csv'}", f"trainer.max_epochs={epochs}"],
    )
    run_dir = out / "run"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    api.train(config, run_dir=run_dir)
    submission = api.predict(run_dir, out / "data" / "test.csv", out / "submission.csv")
    predicted = pd.read_csv(submission)["Label"].to_numpy()
    return DemoResult(
        run_dir=run_dir,
        submission=submission,
        report=run_dir / "report.html",
        test_accuracy=float((predicted == answers).mean()),
        n_test=len(answers),
    )
