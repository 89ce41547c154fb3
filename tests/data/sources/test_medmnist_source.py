"""The medmnist source: the file's own split, a test part evaluated, 3D volumes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from medilab import api
from medilab.config import validate_config
from medilab.data.sources.medmnist_data import MedMNISTSource
from medilab.run import build_inference_trainer
from medilab.tasks.classification_metrics import binary_threshold
from medilab.tasks.registry import get_task_family
from medilab.trained import load_module


def write_npz(path, shape=(12, 12), test=True, seed=0):
    rng = np.random.default_rng(seed)
    parts = {}
    for name, n in (("train", 40), ("val", 12), ("test", 12)):
        if name == "test" and not test:
            continue
        labels = np.arange(n) % 2
        images = rng.integers(0, 60, (n, *shape)).astype(np.uint8)
        images[labels == 1] += 150
        parts[f"{name}_images"], parts[f"{name}_labels"] = images, labels[:, None]
    np.savez(path, **parts)
    return path


def config(path, model="convnet", kwargs=None):
    return validate_config({
        "experiment": "tiny_mnist", "task": "classification",
        "data": {"source": "medmnist", "path": str(path), "batch_size": 8},
        "model": {"name": model, "kwargs": kwargs or {"widths": [8], "convs": 1}},
        "trainer": {"max_epochs": 2, "progress_bar": False},
        "evaluation": {"bootstrap_samples": 20},
    })


def test_own_split_and_test_part_are_kept(tmp_path):
    dm = MedMNISTSource().build_datamodule(config(write_npz(tmp_path / "m.npz")), None)
    counts = dm.splits["split"].value_counts().to_dict()
    assert counts == {"train": 40, "val": 12, "test": 12}
    assert dm.arrays.images.shape == (64, 1, 12, 12) and dm.arrays.images.max() <= 1


def test_volumes_are_one_channel_3d(tmp_path):
    dm = MedMNISTSource().build_datamodule(
        config(write_npz(tmp_path / "v.npz", shape=(8, 8, 8), test=False)), None)
    assert dm.arrays.images.shape == (52, 1, 8, 8, 8)


def test_tiny_run_reports_val_and_test(tmp_path):
    run = api.train(config(write_npz(tmp_path / "m.npz")), run_dir=tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["splits"]) == {"val", "test"}
    assert metrics["n"] == {"val": 12, "test": 12}
    assert metrics["headline"] == "test"
    # the threshold is val's Youden cut (recomputed from predictions_val.csv), applied to test
    val = pd.read_csv(run / "predictions_val.csv")
    test = pd.read_csv(run / "predictions_test.csv")
    cut = binary_threshold(val["prob_1"].to_numpy(), val["label"].to_numpy())
    assert metrics["threshold"]["value"] == pytest.approx(cut, abs=1e-5)
    assert (test["prediction"] == (test["prob_1"] >= metrics["threshold"]["value"])).all()


def test_balanced_sampler_backbone_warmup_and_temperature(tmp_path):
    raw = config(write_npz(tmp_path / "m.npz")).model_dump(mode="json")
    raw["data"]["balanced_sampler"] = True
    raw["trainer"].update(freeze_backbone_epochs=1, max_epochs=2)
    raw["evaluation"]["temperature_scaling"] = True
    from medilab.config import validate_config as validate

    cfg = validate(raw)
    dm = MedMNISTSource().build_datamodule(cfg, None)
    loader = dm.loader("train", train=True)
    assert loader.sampler.__class__.__name__ == "WeightedRandomSampler"
    run = api.train(cfg, run_dir=tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["training"]["epochs_run"] == 2
    # the written probabilities are the raw model's at the fitted temperature, which lowers
    # val's NLL, and the module predict / export load carries that temperature
    temperature = metrics["temperature"]["value"]
    family = get_task_family("classification")
    raw_module = load_module(run, family, cfg, fitted=False)
    dm = family.build_datamodule(cfg, pd.read_csv(run / "splits.csv", dtype={"sample_id": str}))
    trainer = build_inference_trainer(cfg)
    raw = torch.cat(trainer.predict(raw_module, dataloaders=dm.loader("val"))).numpy()
    written = pd.read_csv(run / "predictions_val.csv")[["prob_0", "prob_1"]].to_numpy()
    scaled = torch.softmax(torch.log(torch.from_numpy(raw)) / temperature, dim=1).numpy()
    np.testing.assert_allclose(written, scaled, atol=2e-6)
    labels = torch.from_numpy(dm.labels("val"))

    def nll(probs):
        return float(torch.nn.functional.nll_loss(torch.log(torch.from_numpy(probs)), labels))

    assert nll(scaled) <= nll(raw) + 1e-6
    assert load_module(run, family, cfg).temperature == pytest.approx(temperature)


def test_fitted_fusion_weights_are_saved_and_loaded_with_the_run(tmp_path):
    """Late-fusion weights fitted on val are the ones a rebuilt module (predict, export,
    ensembles) uses, not the uniform training weights."""
    cfg = config(write_npz(tmp_path / "v.npz", shape=(6, 8, 8)), model="fusion_late",
                 kwargs={"slices": 3, "fusion_weights": "fitted",
                         "backbone_kwargs": {"widths": [4], "dropout": 0.0}})
    run = api.train(cfg, run_dir=tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    fitted = json.loads((run / "fitted.json").read_text())["fusion_weights"]
    assert metrics["fusion_weights"]["weights"] == pytest.approx(fitted, abs=1e-4)
    assert fitted != pytest.approx([1 / 3] * 3, abs=1e-3)
    family = get_task_family("classification")
    assert load_module(run, family, cfg).model.fusion_weights() == pytest.approx(fitted)
    assert load_module(run, family, cfg, fitted=False).model.fusion_weights() == pytest.approx(
        [1 / 3] * 3)
