"""DataLoader options from the machine (``data.num_workers: auto``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medilab.config import validate_config
from medilab.data import loading
from medilab.data.datamodules.classification import ArrayClassificationDataModule
from medilab.data.formats.arrays import ImageArrays
from medilab.data.loading import auto_workers, loader_options, pins_memory
from medilab.errors import ConfigError


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 0), (3, 2), (4, 3), (5, 4), (64, 4)])
def test_auto_workers_leave_a_core_to_training(cores, workers):
    assert auto_workers(cores) == workers


def test_auto_follows_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.setattr(loading, "available_cores", lambda: 8)
    assert loader_options("auto", device_is_cuda=False) == {
        "num_workers": 4, "pin_memory": False, "persistent_workers": True}
    monkeypatch.setattr(loading, "available_cores", lambda: 2)
    assert loader_options("auto", device_is_cuda=True) == {
        "num_workers": 0, "pin_memory": True, "persistent_workers": False}


def test_training_workers_start_afresh_each_epoch():
    assert loader_options(2, device_is_cuda=False, train=True)["persistent_workers"] is False
    assert loader_options(2, device_is_cuda=False)["persistent_workers"] is True


def test_explicit_workers_are_kept(monkeypatch):
    monkeypatch.setattr(loading, "available_cores", lambda: 64)
    assert loader_options(0, device_is_cuda=False)["num_workers"] == 0
    assert loader_options(3, device_is_cuda=False) == {
        "num_workers": 3, "pin_memory": False, "persistent_workers": True}


def _config(**data):
    return validate_config({"data": {"source": "sklearn_digits", **data},
                            "model": {"name": "simple_nn"}, "trainer": {"accelerator": "cpu"}})


def test_config_default_is_auto_and_rejects_negative():
    assert _config().data.num_workers == "auto"
    assert _config(num_workers=2).data.num_workers == 2
    with pytest.raises(ConfigError, match="num_workers"):
        _config(num_workers=-1)
    with pytest.raises(ConfigError, match="num_workers"):
        _config(num_workers="many")


def test_memory_is_pinned_only_for_a_gpu(monkeypatch):
    config = _config()
    assert not pins_memory(config)
    gpu = config.model_copy(update={"trainer": config.trainer.model_copy(
        update={"accelerator": "gpu"})})
    assert pins_memory(gpu)


def test_datamodule_loaders_use_the_options(monkeypatch):
    monkeypatch.setattr(loading, "available_cores", lambda: 4)
    arrays = ImageArrays(np.zeros((6, 1, 4, 4), np.float32), np.array([0, 1] * 3),
                         [str(i) for i in range(6)])
    splits = pd.DataFrame({"sample_id": [str(i) for i in range(6)],
                           "split": ["train"] * 4 + ["val"] * 2})
    dm = ArrayClassificationDataModule(arrays, splits, batch_size=2, num_workers="auto",
                                       pin_memory=True)
    loader = dm.val_dataloader()
    assert (loader.num_workers, loader.pin_memory, loader.persistent_workers) == (3, True, True)
    train = dm.train_dataloader()  # workers restarted each epoch: seeded by the epoch
    assert (train.num_workers, train.pin_memory, train.persistent_workers) == (3, True, False)
    plain = ArrayClassificationDataModule(arrays, splits, batch_size=2).train_dataloader()
    assert (plain.num_workers, plain.pin_memory, plain.persistent_workers) == (0, False, False)


def test_training_with_workers_matches_training_without(tmp_path, digits_config):
    """Loader workers change where batches are made, not which: the same curves."""
    from medilab import api

    losses = []
    for workers in (0, 1):
        run = api.train(digits_config, [f"data.num_workers={workers}", "trainer.max_epochs=2"],
                        run_dir=tmp_path / f"w{workers}", evaluate_after=False)
        curves = pd.read_csv(run / "metrics.csv").dropna(subset=["val/loss"])
        losses.append(curves["val/loss"].tolist())
    assert len(losses[0]) == 2 and losses[0] == losses[1]
