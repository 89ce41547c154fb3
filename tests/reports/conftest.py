"""Fake run folders with the files the engine writes, for the report tests."""

from __future__ import annotations

import json
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
