"""Adding a data source or a task family is one module that registers itself: here each is
defined in this test file only, and train → evaluate → predict → report → study run through
them without any other file knowing their names."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from medilab import api
from medilab.config import DataCommon, ExperimentConfig
from medilab.data.formats.arrays import ImageArrays
from medilab.data.sources.base import DataSource, register_source
from medilab.data.sources.digits import array_datamodule
from medilab.data.splits import training_splits
from medilab.io.atomic import write_csv
from medilab.registry import SOURCES, TASKS
from medilab.tasks.base import BaseModule, TaskFamily
from medilab.tasks.registry import register_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _squares(n: int, seed: int) -> ImageArrays:
    """8×8 images: class 1 has a bright square in the centre, class 0 only noise."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    labels = np.arange(n) % 2
    images[labels == 1, :, 2:6, 2:6] += 0.7
    return ImageArrays(images, labels, [f"s{i}" for i in range(n)])


# ------------------------------------------------------------------- a new classification source
class SquaresData(DataCommon):
    source: Literal["test_squares"] = "test_squares"
    count: int = 64


class SquaresSource(DataSource):
    name = "test_squares"
    tasks = ("classification",)
    Config = SquaresData

    def build_datamodule(self, config: ExperimentConfig, splits: pd.DataFrame | None):
        return array_datamodule(config, _squares(config.data.count, config.seed), splits)

    def read_unlabelled(self, config: ExperimentConfig, path: Path) -> ImageArrays:
        images = np.load(path).astype(np.float32)
        return ImageArrays(images, None, [str(i) for i in range(len(images))])


# ------------------------------------------------------------------- a new task family
class BrightnessData(DataCommon):
    """Regression of an image's mean brightness (a toy family's own source)."""

    source: Literal["test_brightness"] = "test_brightness"
    count: int = 48


class BrightnessDataModule(L.LightningDataModule):
    def __init__(self, config: ExperimentConfig, splits: pd.DataFrame | None) -> None:
        super().__init__()
        rng = np.random.default_rng(config.seed)
        self.images = torch.from_numpy(rng.uniform(0, 1, (config.data.count, 1, 6, 6))
                                       .astype(np.float32))
        self.targets = self.images.mean(dim=(1, 2, 3))
        table = pd.DataFrame({"sample_id": [str(i) for i in range(config.data.count)]})
        self.splits = training_splits(table, seed=config.seed, val_fraction=0.25,
                                      test_fraction=0.25, given=splits)
        self.batch_size = config.data.batch_size

    def part(self, split: str) -> TensorDataset:
        index = [int(i) for i in self.splits.loc[self.splits["split"] == split, "sample_id"]]
        return TensorDataset(self.images[index], self.targets[index])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.part("train"), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.part("val"), batch_size=self.batch_size)


class BrightnessSource(DataSource):
    name = "test_brightness"
    tasks = ("brightness",)
    Config = BrightnessData

    def build_datamodule(self, config: ExperimentConfig, splits: pd.DataFrame | None):
        return BrightnessDataModule(config, splits)


class BrightnessModule(BaseModule):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).squeeze(1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = nn.functional.mse_loss(self(batch[0]), batch[1])
        self.log("train/loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val/loss", nn.functional.mse_loss(self(batch[0]), batch[1]), on_epoch=True)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return torch.stack([self(batch[0]), batch[1]], dim=1)


class BrightnessFamily(TaskFamily):
    name = "brightness"
    summary_metrics = ("mae",)
    report_plots = ("scores",)

    def model_args(self, config, datamodule) -> dict:
        return {"in_channels": 1, "num_classes": 1, "hidden_sizes": [8], "input_size": 36}

    def build_module(self, config, model_args, *, for_training):
        model = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.ReLU(), nn.Linear(8, 1))
        return BrightnessModule(config, model)

    def prediction_loader(self, datamodule, split):
        return DataLoader(datamodule.part(split), batch_size=8)

    def score_split(self, module, datamodule, split, outputs, config, run_dir):
        pairs = torch.cat(outputs).numpy()
        ids = datamodule.splits.loc[datamodule.splits["split"] == split, "sample_id"]
        frame = pd.DataFrame({"sample_id": ids.to_numpy(), "prediction": pairs[:, 0],
                              "target": pairs[:, 1], "mae": np.abs(pairs[:, 0] - pairs[:, 1])})
        return frame, {"mae": {"value": float(frame["mae"].mean())}}

    def predict(self, module, config, inputs, out, trainer, **options):
        images = torch.from_numpy(np.load(inputs).astype(np.float32))
        with torch.no_grad():
            values = module(images).numpy()
        return write_csv(pd.DataFrame({"index": range(len(values)), "brightness": values}), out)


@pytest.fixture(scope="module", autouse=True)
def registered():
    """Register the test's source and family the way a plug-in module would (and forget them
    afterwards, so other tests see only the built-in ones)."""
    before_sources, before_tasks = dict(SOURCES._entries), dict(TASKS._entries)
    register_source(SquaresSource)
    register_source(BrightnessSource)
    register_task(BrightnessFamily)
    yield
    SOURCES._entries.clear()
    SOURCES._entries.update(before_sources)
    TASKS._entries.clear()
    TASKS._entries.update(before_tasks)


def _config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_new_source_for_an_existing_family(tmp_path):
    config = _config(tmp_path / "squares.yaml", """
experiment: squares
seed: 0
data: {source: test_squares, count: 64, batch_size: 16, test_fraction: 0.25}
model: {name: simple_nn, kwargs: {hidden_sizes: [16], dropout: 0.0}}
optimizer: {name: adam, lr: 0.01}
trainer: {max_epochs: 4, progress_bar: false, monitor: val/accuracy, monitor_mode: max}
evaluation: {bootstrap_samples: 20}
""")
    run = api.train(config, run_dir=tmp_path / "run")
    metrics = api.evaluate(run)
    assert metrics["splits"]["test"]["accuracy"]["value"] >= 0.9  # bright squares are easy
    np.save(tmp_path / "new.npy", _squares(6, 5).images)
    out = api.predict(run, tmp_path / "new.npy", tmp_path / "preds.csv")
    preds = pd.read_csv(out)
    assert preds["Label"].tolist() == [0, 1, 0, 1, 0, 1]
    assert (run / "report.html").is_file()


def test_a_new_task_family_trains_evaluates_predicts_and_reports(tmp_path):
    config = _config(tmp_path / "bright.yaml", """
experiment: bright
task: brightness
seed: 0
data: {source: test_brightness, count: 48, batch_size: 8}
model: {name: simple_nn}
optimizer: {name: adam, lr: 0.01}
trainer: {max_epochs: 3, progress_bar: false}
""")
    run = api.train(config, run_dir=tmp_path / "run")
    metrics = api.evaluate(run)
    assert metrics["task"] == "brightness" and set(metrics["splits"]) == {"val", "test"}
    assert 0 <= metrics["splits"]["test"]["mae"]["value"] < 1
    np.save(tmp_path / "new.npy", np.full((3, 1, 6, 6), 0.5, np.float32))
    preds = pd.read_csv(api.predict(run, tmp_path / "new.npy", tmp_path / "preds.csv"))
    assert len(preds) == 3 and preds["brightness"].between(-1, 2).all()
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "mae" in page and (run / "plots" / "test_scores.png").is_file()
