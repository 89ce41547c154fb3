"""trainer.precision: auto resolves to bf16-mixed + channels-last only with native bf16."""

from __future__ import annotations

import pytest
import torch

from medilab import precision
from medilab.config import validate_config
from medilab.precision import cpu_has_native_bf16, precision_record, resolve_precision
from medilab.run import ChannelsLast, build_inference_trainer, build_trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(**trainer):
    return validate_config({
        "data": {"source": "sklearn_digits"},
        "model": {"name": "simple_nn"},
        "trainer": {"progress_bar": False, **trainer},
    })


def _cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nvendor_id\t: x\nflags\t\t: fpu sse2 avx2 {flags}\n\n")
    return path


def test_cpu_flags_decide_native_bf16(tmp_path):
    assert cpu_has_native_bf16(_cpuinfo(tmp_path, "avx512f avx512_bf16"))
    assert cpu_has_native_bf16(_cpuinfo(tmp_path, "amx_tile amx_bf16"))
    assert not cpu_has_native_bf16(_cpuinfo(tmp_path, "avx512f avx512bw"))
    assert not cpu_has_native_bf16(tmp_path / "missing")


def test_auto_is_the_default():
    assert _config().trainer.precision == "auto"


def test_auto_without_bf16_is_fp32(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision(_config()) == ("32-true", False)
    assert resolve_precision(_config(channels_last=True)) == ("32-true", True)


def test_auto_with_cpu_bf16_is_bf16_mixed_channels_last(monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    config = _config()
    assert resolve_precision(config) == ("bf16-mixed", True)
    assert precision_record(config) == {"configured": "auto", "precision": "bf16-mixed",
                                        "channels_last": True}
    trainer = build_trainer(config, tmp_path)
    assert trainer.precision == "bf16-mixed"
    assert any(isinstance(c, ChannelsLast) for c in trainer.callbacks)
    inference = build_inference_trainer(config)
    assert inference.precision == "bf16-mixed"
    assert any(isinstance(c, ChannelsLast) for c in inference.callbacks)


def test_auto_on_a_bf16_gpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision(_config(accelerator="gpu")) == ("bf16-mixed", True)
    assert resolve_precision(_config(accelerator="auto")) == ("bf16-mixed", True)
    assert resolve_precision(_config(accelerator="cpu")) == ("32-true", False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision(_config(accelerator="gpu")) == ("32-true", False)


def test_explicit_precision_is_kept(monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision(_config(precision="32-true")) == ("32-true", False)
    assert resolve_precision(_config(precision="bf16-mixed")) == ("bf16-mixed", False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    trainer = build_trainer(_config(precision="bf16-mixed", channels_last=True), tmp_path)
    assert trainer.precision == "bf16-mixed"
    assert any(isinstance(c, ChannelsLast) for c in trainer.callbacks)
    assert build_trainer(_config(), tmp_path).precision == "32-true"


def test_train_records_the_choice_in_status(monkeypatch, tmp_path, digits_config):
    from medilab.run import train
    from medilab.runfolder import read_status

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    folder = train(digits_config, ["trainer.max_epochs=1", "trainer.limit_train_batches=1",
                                   "trainer.limit_val_batches=1"], run_dir=tmp_path / "run")
    reason = "no native bf16 on this device: emulated bf16 is slower than fp32"
    assert read_status(folder)["precision"] == {
        "configured": "auto", "precision": "32-true", "channels_last": False, "reason": reason,
        "inference": {"precision": "32-true", "channels_last": False, "reason": reason}}
