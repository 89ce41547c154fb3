"""A training that diverges (NaN/inf loss) or crashes inside the fit stops at once, leaves its
run folder marked ``failed`` with the reason, and the CLI says so in one line (exit 2)."""

from __future__ import annotations

import pytest
import torch

from medilab import api, cli
from medilab.errors import NonFiniteLossError, TrainingFailedError
from medilab.runfolder import read_status
from medilab.tasks.base import check_finite_outputs
from medilab.tasks.classification import ClassificationModule

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _nan_at_second_step(monkeypatch):
    real = ClassificationModule.training_step
    seen = []

    def step(self, batch, batch_idx):
        loss = real(self, batch, batch_idx)
        seen.append(batch_idx)
        return loss * float("nan") if len(seen) == 2 else loss

    monkeypatch.setattr(ClassificationModule, "training_step", step)
    return seen


def test_nan_loss_stops_training_at_once_and_marks_the_run_failed(
    digits_config, tmp_path, monkeypatch
):
    seen = _nan_at_second_step(monkeypatch)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 1, step 2 .*32-true"):
        api.train(digits_config, run_dir=tmp_path / "run")
    assert len(seen) == 2  # no step after the NaN one
    status = read_status(tmp_path / "run")
    assert status["state"] == "failed" and "epoch 1, step 2" in status["reason"]


def test_cli_prints_one_line_for_a_diverged_training(digits_config, tmp_path, monkeypatch,
                                                      capsys):
    _nan_at_second_step(monkeypatch)
    with pytest.raises(SystemExit) as exited:
        cli.main(["train", str(digits_config), "--run-dir", str(tmp_path / "run")])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: training loss is nan at epoch 1")
    assert "Traceback" not in err[0]


def test_a_crash_inside_training_marks_the_run_failed(digits_config, tmp_path, monkeypatch):
    def crash(self, batch, batch_idx):
        raise RuntimeError("required rank 4 tensor to use channels_last format\nmore detail")

    monkeypatch.setattr(ClassificationModule, "training_step", crash)
    with pytest.raises(TrainingFailedError, match="training failed: RuntimeError: required rank"
                       ) as caught:
        api.train(digits_config, run_dir=tmp_path / "run")
    assert "more detail" not in str(caught.value)
    assert isinstance(caught.value.__cause__, RuntimeError)
    status = read_status(tmp_path / "run")
    assert status["state"] == "failed"
    assert status["reason"] == "RuntimeError: required rank 4 tensor to use channels_last format"


def test_evaluation_refuses_non_finite_outputs_in_one_line():
    good = [torch.rand(4, 2), {"boxes": torch.rand(3, 4), "labels": torch.tensor([1, 1, 1])}]
    check_finite_outputs(good, "val")
    bad = [*good, {"scores": torch.tensor([0.5, float("nan")])}, torch.full((2, 2), float("inf"))]
    with pytest.raises(Exception, match=r"val: the model's outputs are NaN or infinite in 2 of 4"):
        check_finite_outputs(bad, "val")
