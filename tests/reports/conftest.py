"""Run folders for the report tests: ``engine_runs`` are trained and evaluated by the real
engine (once per session); the hand-made ``make_*_run`` folders cover edge cases only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image


def write_sparse_metrics_csv(path: Path, epochs: int, rng: np.random.Generator,
                             val_metrics: tuple[str, ...], steps_per_epoch: int = 5,
                             skill: float = 0.9, epoch_suffix: bool = False) -> None:
    """metrics.csv as Lightning's CSVLogger writes it: one sparse row per logging call."""
    rows = []
    step = 0
    train_loss = "train/loss_epoch" if epoch_suffix else "train/loss"
    for epoch in range(epochs):
        rows.append({"step": step, "lr-Adam": 1e-3 * 0.5 ** epoch})  # lr monitor: no epoch
        for _ in range(steps_per_epoch):
            if epoch_suffix:
                rows.append({"epoch": epoch, "step": step,
                             "train/loss_step": 1.2 / (epoch + 1) + rng.normal(0, 0.05)})
            step += 1
        progress = (epoch + 1) / epochs
        rows.append({"epoch": epoch, "step": step - 1, train_loss: 1.0 / (epoch + 1),
                     "train/accuracy": 0.5 + 0.45 * progress})
        val = {"epoch": epoch, "step": step - 1, "val/loss": 1.1 / (epoch + 1) + 0.05}
        for name in val_metrics:
            val[f"val/{name}"] = min(1.0, 0.5 + (skill - 0.5) * progress)
        rows.append(val)
    pd.DataFrame(rows).to_csv(path, index=False)


def entry(value: float, width: float = 0.02) -> dict[str, float]:
    high = round(min(1.0, value + width), 4)
    return {"value": value, "low": round(value - width, 4), "high": high}


def write_classification_predictions(path: Path, n: int, k: int, rng: np.random.Generator,
                                     skill: float) -> pd.DataFrame:
    """predictions_<split>.csv: sample_id, patient_id, label, prediction, prob_0..prob_{k-1}."""
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), labels] += 3 * skill
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame({
        "sample_id": [f"s{i:04d}" for i in range(n)],
        "patient_id": [f"p{i // 2:04d}" for i in range(n)],
        "label": labels,
        "prediction": probs.argmax(axis=1),
    })
    for j in range(k):
        frame[f"prob_{j}"] = probs[:, j]
    frame["age"] = rng.integers(20, 90, n)
    frame["sex"] = rng.choice(["F", "M"], n)
    frame.to_csv(path, index=False)
    return frame


def make_classification_run(root: Path, experiment: str = "lab2_resnet50", k: int = 3,
                            skill: float = 0.8, seed: int = 0,
                            timestamp: str = "2026-11-27T10-00-00") -> Path:
    """A complete classification run folder."""
    rng = np.random.default_rng(seed)
    run = root / experiment / timestamp
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(b"fake")
    (run / "config.yaml").write_text(
        f"experiment: {experiment}\ntask: classification\nseed: {seed}\n"
        "data:\n  source: sklearn_digits\n  batch_size: 32\n"
        f"model:\n  name: resnet50\n  kwargs:\n    num_classes: {k}\n    in_chans: 1\n"
        "optimizer:\n  name: adam\n  lr: 0.001\ntrainer:\n  max_epochs: 4\n", encoding="utf-8")
    names = ["accuracy", "f1_macro", "auroc"]
    write_sparse_metrics_csv(run / "metrics.csv", 4, rng, tuple(names), skill=skill,
                             epoch_suffix=k == 2)
    frame = write_classification_predictions(run / "predictions_val.csv", 120, k, rng, skill)
    accuracy = float((frame["label"] == frame["prediction"]).mean())
    metrics = {
        "experiment": experiment, "task": "classification", "model": "resnet50",
        "splits": {
            "val": {"accuracy": entry(accuracy), "f1_macro": entry(accuracy - 0.01),
                    "auroc": entry(min(0.999, accuracy + 0.05)), "loss": entry(1 - accuracy)},
            "test": {"accuracy": entry(0.9712, 0.015)},
        },
        "n": {"val": 120, "test": 60},
        "subgroups": {"val": {"sex=F": {"accuracy": entry(0.8), "n": 50},
                              "sex=M": {"accuracy": entry(0.7), "n": 70}}},
        "notes": ["intervals: 1000 bootstrap resamples of patients"],
        "class_names": [f"class{i}" for i in range(k)],
    }
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return run


def make_segmentation_run(root: Path) -> Path:
    """A segmentation run folder with per-image Dice and overlay PNGs in plots/overlays/."""
    rng = np.random.default_rng(3)
    run = root / "lab4_unet" / "2026-11-27T11-00-00"
    (run / "plots" / "overlays").mkdir(parents=True)
    (run / "config.yaml").write_text("experiment: lab4_unet\ntask: segmentation\nmodel:\n"
                                     "  name: unet\n", encoding="utf-8")
    write_sparse_metrics_csv(run / "metrics.csv", 3, rng, ("dice", "iou"))
    dice = np.round(rng.uniform(0.3, 0.98, 10), 4)
    images, overlays = [], []
    for i in range(10):
        name = f"case{i:02d}"
        pixels = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(run / "plots" / "overlays" / f"{name}.png")
        images.append(f"images/{name}.png")
        overlays.append(f"plots/overlays/{name}.png")
    pd.DataFrame({"image": images, "dice": dice, "iou": dice / (2 - dice),
                  "overlay": overlays}).to_csv(run / "predictions_val.csv", index=False)
    metrics = {"experiment": "lab4_unet", "task": "segmentation", "model": "unet",
               "splits": {"val": {"dice": entry(float(dice.mean()), 0.05)}}, "n": {"val": 10},
               "notes": ["empty masks score Dice 1 when the prediction is empty too"]}
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return run


@pytest.fixture
def classification_run_factory():
    """``make_classification_run`` itself, for tests that need several runs."""
    return make_classification_run


@pytest.fixture
def multiclass_run(tmp_path: Path) -> Path:
    return make_classification_run(tmp_path, "lab2_resnet50", k=3, skill=0.8)


@pytest.fixture
def binary_run(tmp_path: Path) -> Path:
    return make_classification_run(tmp_path, "lab3_early", k=2, skill=0.5, seed=1)


@pytest.fixture
def segmentation_run(tmp_path: Path) -> Path:
    return make_segmentation_run(tmp_path)


# --------------------------------------------------------------------------- engine-written runs


@dataclass
class EngineRuns:
    """Run folders written by the real engine (``medilab.api``), built once per session."""

    digits_a: Path  # sklearn digits, val and test splits, monitors val/accuracy
    digits_b: Path  # the same splits, another hidden size
    ensemble: Path  # mean of digits_a and digits_b
    crossval: Path  # 2-fold cross-validation of digits (fold0, fold1, crossval.json)
    segmentation: Path  # circles, 2 validation images


def digits_config(experiment: str, splits_csv: Path | None, hidden: int,
                  epochs: int = 2) -> dict:
    data: dict = {"source": "sklearn_digits", "batch_size": 64}
    if splits_csv is not None:
        data["splits_csv"] = str(splits_csv)
    return {
        "experiment": experiment, "seed": 1, "data": data,
        "model": {"name": "simple_nn", "kwargs": {"hidden_sizes": [hidden]}},
        "optimizer": {"name": "adam", "lr": 0.01},
        "trainer": {"max_epochs": epochs, "progress_bar": False, "limit_train_batches": 3,
                    "monitor": "val/accuracy", "monitor_mode": "max"},
        "evaluation": {"bootstrap_samples": 20},
    }


def write_digits_splits(path: Path) -> Path:
    """sklearn digits split 60/20/20 into train, val and test (seeded)."""
    from sklearn.datasets import load_digits

    labels = load_digits().target
    rng = np.random.default_rng(0)
    split = rng.choice(["train", "val", "test"], size=len(labels), p=[0.6, 0.2, 0.2])
    pd.DataFrame({"sample_id": [str(i) for i in range(1, len(labels) + 1)], "split": split,
                  "label": labels}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def engine_runs(tmp_path_factory: pytest.TempPathFactory) -> EngineRuns:
    """Tiny runs trained and evaluated by the engine, once per session.

    ``digits_a`` and ``segmentation`` go through ``medilab.api.train`` (train, evaluate and
    report.html, as a user gets them); the others are only trained and evaluated (their
    reports are not needed, and plotting is the slow part).
    """
    from medilab import api, run
    from medilab.config import validate_config
    from medilab.crossval import cross_validate
    from medilab.ensemble import create_ensemble
    from segmentation_samples import circles_config, write_circles

    root = tmp_path_factory.mktemp("engine_runs")
    splits = write_digits_splits(root / "digits_splits.csv")
    a = api.train(validate_config(digits_config("digits_a", splits, 16), "config"),
                  run_dir=root / "runs" / "digits_a")
    b = run.train(validate_config(digits_config("digits_b", splits, 24), "config"),
                  run_dir=root / "runs" / "digits_b")
    run.evaluate(b)
    ensemble = create_ensemble([a, b], root / "runs" / "digits_ensemble")
    run.evaluate(ensemble)
    crossval = root / "cv_digits"
    cross_validate(validate_config(digits_config("digits_cv", None, 16, epochs=1), "config"),
                   2, crossval, evaluate=run.evaluate)
    write_circles(root / "circles", n=6)
    raw = circles_config(root / "circles")
    raw["trainer"]["max_epochs"] = 1
    segmentation = api.train(validate_config(raw, "config"), run_dir=root / "runs" / "circles")
    return EngineRuns(a, b, ensemble, crossval, segmentation)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on ``engine_runs`` are slow (they train): ``-m "not slow"`` leaves them out."""
    for item in items:
        if "engine_runs" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
