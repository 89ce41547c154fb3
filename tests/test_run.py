"""The engine: Trainer from config, run folder, sources through config, loggers, precision."""

import json

import pandas as pd
import torch
from lightning.pytorch import callbacks as cb

from medilab import api
from medilab.config import load_config
from medilab.run import build_trainer
from medilab.training_summary import EpochLines


def test_trainer_from_config(tmp_path, digits_config):
    config = load_config(
        digits_config,
        ["trainer.max_epochs=3", "trainer.monitor=val/accuracy", "trainer.monitor_mode=max",
         "trainer.early_stopping.patience=2", "trainer.tensorboard=true",
         "trainer.progress_bar=true"],
    )
    trainer = build_trainer(config, tmp_path)
    best, latest = [c for c in trainer.callbacks if isinstance(c, cb.ModelCheckpoint)]
    assert best.monitor == "val/accuracy" and best.mode == "max"
    assert best.filename == "best" and best.dirpath == str(tmp_path / "checkpoints")
    assert latest.filename == "last" and latest.monitor is None
    stopping = next(c for c in trainer.callbacks if isinstance(c, cb.EarlyStopping))
    assert stopping.patience == 2 and stopping.monitor == "val/accuracy"
    # not a terminal (pytest captures stdout): one line per epoch instead of a progress bar
    assert any(isinstance(c, EpochLines) for c in trainer.callbacks)
    assert not any(isinstance(c, cb.RichProgressBar) for c in trainer.callbacks)
    assert [type(lg).__name__ for lg in trainer.loggers] == ["CSVLogger", "TensorBoardLogger"]
    assert trainer.max_epochs == 3


def test_early_stopping_can_be_disabled(tmp_path, digits_config):
    config = load_config(digits_config, ["trainer.early_stopping.enabled=false"])
    trainer = build_trainer(config, tmp_path)
    assert not any(isinstance(c, cb.EarlyStopping) for c in trainer.callbacks)


def test_sklearn_digits_source_bf16_tensorboard(tmp_path, digits_config):
    """Another source through config, bf16 mixed precision on CPU, and the TensorBoard logger."""
    text = digits_config.read_text().replace("source: pixel_csv", "source: sklearn_digits")
    text = "\n".join(
        line for line in text.splitlines() if "train_csv" not in line and "pixel_scale" not in line
    )
    config = tmp_path / "sklearn_digits.yaml"
    config.write_text(text)
    run_dir = api.train(
        config,
        ["trainer.max_epochs=1", "trainer.precision=bf16-mixed", "trainer.tensorboard=true",
         "evaluation.bootstrap_samples=20"],
        run_dir=tmp_path / "run",
    )
    splits = pd.read_csv(run_dir / "splits.csv")
    assert len(splits) == 1797
    # stratified: every digit is ~20% validation
    share = splits.groupby("label")["split"].apply(lambda s: (s == "val").mean())
    assert share.between(0.17, 0.23).all()
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n"]["val"] == 360
    assert metrics["model"] == "simple_nn"


def test_same_seed_same_split_and_metrics(tmp_path, digits_config):
    runs = [
        api.train(digits_config, ["trainer.max_epochs=1"], run_dir=tmp_path / f"r{i}")
        for i in range(2)
    ]
    assert (runs[0] / "splits.csv").read_text() == (runs[1] / "splits.csv").read_text()
    first, second = (json.loads((r / "metrics.json").read_text())["splits"] for r in runs)
    assert first == second


def test_default_run_folders_are_distinct(tmp_path, digits_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    overrides = ["trainer.max_epochs=1"]
    first = api.train(digits_config, overrides, evaluate_after=False)
    second = api.train(digits_config, overrides, evaluate_after=False)
    assert first != second
    assert first.parent == second.parent == tmp_path.joinpath("runs", "tiny_digits").relative_to(
        tmp_path
    )
    assert (first / "checkpoints/best.ckpt").is_file() and (second / "splits.csv").is_file()


def test_channels_last_callback_converts_conv_weights(tmp_path, digits_config):
    from torch import nn

    from medilab.run import ChannelsLast

    config = load_config(digits_config, ["trainer.channels_last=true"])
    trainer = build_trainer(config, tmp_path)
    callback = next(c for c in trainer.callbacks if isinstance(c, ChannelsLast))
    module = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(4, 2))
    assert not module[0].weight.is_contiguous(memory_format=torch.channels_last)
    callback.on_fit_start(trainer, module)
    assert module[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert module[1].weight.is_contiguous()  # 2D weights are left as they are
    plain = build_trainer(load_config(digits_config), tmp_path)
    assert not any(isinstance(c, ChannelsLast) for c in plain.callbacks)


def test_last_checkpoint_is_the_last_epoch_even_when_the_best_is_earlier(tmp_path, digits_config):
    run_dir = api.train(
        digits_config, ["trainer.max_epochs=3", "trainer.monitor=epoch", "trainer.monitor_mode=min",
                        "trainer.early_stopping.enabled=false"],
        run_dir=tmp_path / "run", evaluate_after=False,
    )
    epochs = {name: torch.load(run_dir / "checkpoints" / f"{name}.ckpt", weights_only=True)["epoch"]
              for name in ("best", "last")}
    assert epochs == {"best": 0, "last": 2}


def test_interrupt_in_epoch_zero_leaves_a_restartable_folder(tmp_path, digits_config,
                                                             monkeypatch):
    import json

    import pytest

    from medilab import api
    from medilab.tasks.classification import ClassificationModule

    original = ClassificationModule.training_step

    def interrupted(self, batch, batch_idx):
        raise KeyboardInterrupt

    monkeypatch.setattr(ClassificationModule, "training_step", interrupted)
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        api.train(digits_config, run_dir=run_dir)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "interrupted" and "starts again" in status["next"]
    monkeypatch.setattr(ClassificationModule, "training_step", original)
    api.train(digits_config, run_dir=run_dir)  # the same command again, in place
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    assert (run_dir / "metrics.json").is_file()


def test_resume_replans_the_cosine_decay_instead_of_raising_the_rate(tmp_path, digits_config):
    import pandas as pd
    import pytest

    from medilab import api

    run_dir = tmp_path / "run"
    api.train(digits_config, ["scheduler.name=cosine", "trainer.max_epochs=2"], run_dir,
              evaluate_after=False)
    api.train(None, ["trainer.max_epochs=4"], run_dir, resume=True, evaluate_after=False)
    curves = pd.read_csv(run_dir / "metrics.csv")
    lr = curves.dropna(subset=["lr-Adam"])["lr-Adam"].to_numpy()
    assert len(lr) == 4
    assert all(b <= a + 1e-12 for a, b in zip(lr, lr[1:], strict=False))  # never rises again
    assert lr[-1] < lr[1] and lr[2] > 0  # continues from the last rate, not from 0
    assert lr[2] == pytest.approx(lr[1] * 0.75) and lr[3] == pytest.approx(lr[1] * 0.25)
