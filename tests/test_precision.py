"""trainer.precision: auto resolves to bf16-mixed + channels-last only with native bf16, keeps
3D models in fp32, and yields to MEDILAB_PRECISION; channels-last works for 2D, 3D and detection
models; a diverged or crashed training ends as a failed run with one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medilab import precision
from medilab.config import validate_config
from medilab.errors import ConfigError
from medilab.models.registry import create_model
from medilab.precision import (
    PRECISION_ENV,
    choose_precision,
    cpu_has_native_bf16,
)
from medilab.run import ChannelsLast, build_inference_trainer, build_trainer, to_channels_last

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU_KINDS = {  # /proc/cpuinfo flags of the CPUs the project runs on
    "avx2": "avx avx2 fma",
    "avx512_bf16": "avx2 avx512f avx512bw avx512_bf16",
    "amx": "avx2 avx512f avx512_bf16 amx_tile amx_bf16 amx_int8",
}


@pytest.fixture(autouse=True)
def no_precision_override(monkeypatch):
    """These tests check what ``auto`` itself picks: the suite-wide override is removed."""
    monkeypatch.delenv(PRECISION_ENV, raising=False)


def _precision(config, model=None) -> tuple[str, bool]:
    """(Lightning precision, channels-last weights) that choose_precision picks."""
    choice = choose_precision(config, model)
    return choice.precision, choice.channels_last


def _tiny_models():
    return {
        "2d": create_model("convnet", in_channels=1, num_classes=2, widths=[4, 8], convs=1),
        "3d": create_model("cnn3d", in_channels=1, num_classes=2, width=4, depth=2,
                           convs_per_stage=1),
        "detection": create_model("fasterrcnn_small", num_classes=1, min_size=64, max_size=64),
    }


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
    assert _precision(_config()) == ("32-true", False)
    assert _precision(_config(channels_last=True)) == ("32-true", True)


def test_auto_with_cpu_bf16_is_bf16_mixed_channels_last(monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    config = _config()
    assert _precision(config) == ("bf16-mixed", True)
    assert choose_precision(config).record("auto") == {
        "configured": "auto", "precision": "bf16-mixed", "channels_last": True,
        "reason": "native bf16 on this device"}
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
    assert _precision(_config(accelerator="gpu")) == ("bf16-mixed", True)
    assert _precision(_config(accelerator="auto")) == ("bf16-mixed", True)
    assert _precision(_config(accelerator="cpu")) == ("32-true", False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert _precision(_config(accelerator="gpu")) == ("32-true", False)


def test_explicit_precision_is_kept(monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert _precision(_config(precision="32-true")) == ("32-true", False)
    assert _precision(_config(precision="bf16-mixed")) == ("bf16-mixed", False)
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
    chosen = {"precision": "32-true", "channels_last": False,
              "reason": "no native bf16 on this device"}
    assert read_status(folder)["precision"] == {"configured": "auto", **chosen,
                                                "inference": chosen}


@pytest.mark.parametrize("kind", list(CPU_KINDS))
def test_auto_per_model_on_each_kind_of_cpu(monkeypatch, tmp_path, kind):
    """2D and detection models get bf16 + channels-last where the simulated CPU has native
    bf16; 3D models stay fp32 on every CPU (their bf16 loss was NaN on AVX512-BF16)."""
    cpuinfo = _cpuinfo(tmp_path, CPU_KINDS[kind])
    real = precision.cpu_has_native_bf16
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: real(cpuinfo))
    native = kind != "avx2"
    config = _config()
    for name, model in _tiny_models().items():
        choice = choose_precision(config, model)
        expected = ("32-true", False) if name == "3d" or not native else ("bf16-mixed", True)
        assert (choice.precision, choice.channels_last) == expected, (kind, name)
        assert choice.reason
        trainer = build_trainer(config, tmp_path / name, model)
        assert trainer.precision == expected[0]
        assert any(isinstance(c, ChannelsLast) for c in trainer.callbacks) == expected[1]


def test_environment_override_wins_over_auto_only(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setenv(PRECISION_ENV, "32-true")
    assert _precision(_config()) == ("32-true", False)
    assert choose_precision(_config()).reason == f"{PRECISION_ENV}=32-true"
    assert _precision(_config(precision="bf16-mixed")) == ("bf16-mixed", False)
    monkeypatch.setenv(PRECISION_ENV, "fp33")
    with pytest.raises(ConfigError, match=f"{PRECISION_ENV}: unknown precision 'fp33'"):
        _precision(_config())


def test_channels_last_converts_2d_and_3d_weights_and_keeps_outputs():
    models = _tiny_models()
    for name in ("2d", "3d"):
        model = models[name].eval()
        shape = (2, 1, 8, 16, 16) if name == "3d" else (2, 1, 16, 16)
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        before = model(x)
        to_channels_last(model)
        conv = [p for p in model.parameters() if p.dim() == len(shape)][-1]  # C_in > 1
        layout = torch.channels_last_3d if name == "3d" else torch.channels_last
        assert conv.is_contiguous(memory_format=layout) and not conv.is_contiguous()
        torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-5)


def test_3d_model_trains_for_real_in_bf16_with_channels_last(tmp_path):
    """Explicit bf16 + channels-last on a 3D model (emulated bf16 where the CPU has none): no
    layout crash, finite losses, fp32 weights."""
    import lightning as L

    from medilab.tasks.base import BaseModule

    class Volumes(BaseModule):
        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.model(x).float(), y)
            self.losses.append(float(loss))
            return loss

    config = _config(precision="bf16-mixed", channels_last=True, max_epochs=1)
    model = create_model("cnn3d", in_channels=1, num_classes=2, width=4, depth=2,
                         convs_per_stage=1)
    module = Volumes(config, model)
    module.losses = []
    x = torch.randn(8, 1, 8, 12, 12, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1] * 4)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    trainer = build_trainer(config, tmp_path, model, logger=False, enable_checkpointing=False,
                            callbacks=[ChannelsLast()])
    assert isinstance(trainer, L.Trainer) and trainer.precision == "bf16-mixed"
    trainer.fit(module, train_dataloaders=loader)
    assert len(module.losses) == 2 and all(np.isfinite(module.losses))
    assert next(model.parameters()).dtype == torch.float32
    assert model.features[0][0].weight.is_contiguous(memory_format=torch.channels_last_3d)
