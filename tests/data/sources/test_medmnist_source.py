"""The medmnist source: the file's own split, a test part evaluated, 3D volumes."""

from __future__ import annotations

import json

import numpy as np

from medilab import api
from medilab.config import validate_config
from medilab.data.sources.medmnist_data import MedMNISTSource


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
    assert (run / "predictions_test.csv").is_file()
    assert metrics["threshold"]["chosen_on"] == "val"


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
    assert metrics["temperature"]["value"] > 0
    assert metrics["training"]["epochs_run"] == 2
