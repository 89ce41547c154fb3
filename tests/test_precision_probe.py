"""``trainer.precision: auto`` per phase: fp32 without probing where bf16 is emulated; on a CPU
with native bf16 a timed probe per phase (simulated timings here, so no test depends on the
real CPU), cached in the run folder and recorded in status.json."""

from __future__ import annotations

import json

import pytest
import torch

from medilab import precision, precision_probe
from medilab.config import validate_config
from medilab.models.registry import create_model
from medilab.precision import PRECISION_ENV
from medilab.precision_probe import phase_choice
from medilab.run import build_inference_trainer, first_batch, train
from medilab.runfolder import PRECISION_PROBE_FILE, read_status
from medilab.tasks.classification import ClassificationFamily

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def no_precision_override(monkeypatch):
    """The suite's MEDILAB_PRECISION=32-true would decide before any probe."""
    monkeypatch.delenv(PRECISION_ENV, raising=False)


def _config(**trainer):
    return validate_config({"data": {"source": "sklearn_digits"},
                            "model": {"name": "convnet",
                                      "kwargs": {"widths": [4], "convs": 1}},
                            "trainer": {"progress_bar": False, **trainer}})


def _module(config):
    args = {"in_channels": 1, "num_classes": 3, "image_size": [8, 8], "class_names": list("abc"),
            "widths": [4], "convs": 1}
    return ClassificationFamily().build_module(config, args, for_training=True)


def _batch():
    generator = torch.Generator().manual_seed(0)
    return {"image": torch.randn(4, 1, 8, 8, generator=generator),
            "label": torch.tensor([0, 1, 2, 0])}


def _simulated_cpu(monkeypatch, seconds):
    """A CPU with native bf16 whose probe takes ``seconds[(phase, precision)]`` per step."""
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda *a: True)
    monkeypatch.setattr(precision_probe, "cpu_name", lambda *a: "Simulated Xeon")
    calls = []

    def step_function(module, batch, phase, precision_name):
        calls.append((phase, precision_name))
        return phase, precision_name

    monkeypatch.setattr(precision_probe, "step_function", step_function)
    monkeypatch.setattr(precision_probe, "seconds_per_step", lambda step: seconds[step])
    return calls


def test_without_native_bf16_auto_is_fp32_for_both_phases_and_never_probes(monkeypatch, tmp_path):
    def no_probe(*args, **kwargs):
        raise AssertionError("probed on a CPU without native bf16")

    monkeypatch.setattr(precision_probe, "probe", no_probe)
    config = _config()
    for phase in ("train", "infer"):
        choice = phase_choice(config, phase, tmp_path / "probe.json", _module(config), _batch)
        assert (choice.precision, choice.channels_last) == ("32-true", False)
        assert "no native bf16" in choice.reason
    assert not (tmp_path / "probe.json").exists()


def test_native_bf16_probe_keeps_the_faster_per_phase_and_caches_it(monkeypatch, tmp_path):
    # training: bf16 twice as fast; inference: bf16 four times slower (issue #21's ResNet-50)
    calls = _simulated_cpu(monkeypatch, {("train", "32-true"): 0.2, ("train", "bf16-mixed"): 0.1,
                                         ("infer", "32-true"): 0.05,
                                         ("infer", "bf16-mixed"): 0.2})
    config, cache = _config(), tmp_path / "probe.json"
    module = _module(config)
    trained = phase_choice(config, "train", cache, module, _batch)
    inferred = phase_choice(config, "infer", cache, module, _batch)
    assert (trained.precision, trained.channels_last) == ("bf16-mixed", True)
    assert trained.reason == "probe: bf16 + channels-last 2.00x faster than fp32 for train"
    assert trained.seconds == {"32-true": 0.2, "bf16-mixed+channels_last": 0.1}
    assert (inferred.precision, inferred.channels_last) == ("32-true", False)
    assert inferred.reason == "probe: fp32 4.00x faster than bf16 + channels-last for infer"
    assert calls == [("train", "32-true"), ("train", "bf16-mixed"),
                     ("infer", "32-true"), ("infer", "bf16-mixed")]
    stored = json.loads(cache.read_text())
    assert stored["infer"]["precision"] == "32-true"
    assert stored["train"]["machine"] == "Simulated Xeon / 1 threads"
    assert stored["train"]["input_shape"] == [[4, 1, 8, 8], [4]]

    calls.clear()  # a second use on the same machine reads the cache
    again = phase_choice(config, "infer", cache, module, _batch)
    assert calls == [] and again.precision == "32-true"
    assert again.reason.startswith("cached probe (probe: fp32 4.00x")

    monkeypatch.setattr(precision_probe, "cpu_name", lambda *a: "Another CPU")
    phase_choice(config, "infer", cache, module, _batch)
    assert calls == [("infer", "32-true"), ("infer", "bf16-mixed")]  # another machine: probed


def test_a_tie_keeps_fp32_and_no_batch_means_no_probe(monkeypatch, tmp_path):
    calls = _simulated_cpu(monkeypatch, {("infer", "32-true"): 0.1,
                                         ("infer", "bf16-mixed"): 0.1})
    config = _config()
    assert phase_choice(config, "infer", tmp_path / "p.json", _module(config),
                        _batch).precision == "32-true"
    calls.clear()
    unprobed = {phase: phase_choice(_config(), phase, None) for phase in ("train", "infer")}
    compiled = phase_choice(_config(compile=True), "infer", tmp_path / "c.json", _module(config),
                            _batch)
    assert calls == [] and compiled.precision == "32-true"
    assert (unprobed["train"].precision, unprobed["train"].channels_last) == ("bf16-mixed", True)
    assert unprobed["infer"].precision == "32-true"
    assert "not probed" in unprobed["infer"].reason


def test_an_explicit_precision_and_a_gpu_are_not_probed(monkeypatch, tmp_path):
    calls = _simulated_cpu(monkeypatch, {})
    choice = phase_choice(_config(precision="bf16-mixed", channels_last=True), "infer",
                          tmp_path / "p.json", _module(_config()), _batch)
    assert (choice.precision, choice.channels_last, choice.reason) == ("bf16-mixed", True,
                                                                       "set in the config")
    monkeypatch.setenv(PRECISION_ENV, "32-true")  # the override wins over a probe
    override = phase_choice(_config(), "train", tmp_path / "p.json", _module(_config()), _batch)
    assert (override.precision, override.reason) == ("32-true", f"{PRECISION_ENV}=32-true")
    monkeypatch.delenv(PRECISION_ENV)
    volume = create_model("cnn3d", in_channels=1, num_classes=2, width=2, depth=1)
    kept = phase_choice(_config(), "infer", tmp_path / "p.json", volume, _batch)
    assert kept.precision == "32-true" and "3D" in kept.reason  # fp32 for 3D, not probed
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    gpu = phase_choice(_config(accelerator="gpu"), "train", tmp_path / "p.json")
    assert (gpu.precision, gpu.channels_last) == ("bf16-mixed", True)
    assert calls == []


@pytest.mark.parametrize("phase", ["train", "infer"])
def test_a_real_probe_leaves_the_module_and_rngs_as_they_were(phase):
    """One real (tiny, emulated-bf16 where the CPU lacks it) probe of each candidate."""
    torch.manual_seed(0)
    model = create_model("convnet", in_channels=1, num_classes=3, widths=[4], convs=1)
    module = _module(_config())
    module.model = model
    module.train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    rng = torch.get_rng_state()
    choice = precision_probe.probe(module, _batch(), phase)
    assert set(choice.seconds) == {"32-true", "bf16-mixed+channels_last"}
    assert all(s > 0 for s in choice.seconds.values())
    assert choice.precision == ("32-true" if choice.seconds["32-true"]
                                <= choice.seconds["bf16-mixed+channels_last"] else "bf16-mixed")
    after = module.state_dict()
    for key, value in before.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=0, msg=key)
    assert all(p.grad is None for p in module.parameters())
    assert all(p.is_contiguous() for p in module.parameters())
    assert module.training
    assert torch.equal(torch.get_rng_state(), rng)


def test_train_records_both_choices_and_evaluate_reuses_the_cache(monkeypatch, tmp_path,
                                                                  digits_config):
    _simulated_cpu(monkeypatch, {("train", "32-true"): 0.3, ("train", "bf16-mixed"): 0.1,
                                 ("infer", "32-true"): 0.1, ("infer", "bf16-mixed"): 0.3})
    folder = train(digits_config, ["trainer.max_epochs=1", "trainer.limit_train_batches=1",
                                   "trainer.limit_val_batches=1"], run_dir=tmp_path / "run")
    record = read_status(folder)["precision"]
    assert record["configured"] == "auto"
    assert (record["precision"], record["channels_last"]) == ("bf16-mixed", True)
    assert record["reason"] == "probe: bf16 + channels-last 3.00x faster than fp32 for train"
    assert record["probe_seconds"] == {"32-true": 0.3, "bf16-mixed+channels_last": 0.1}
    assert record["inference"]["precision"] == "32-true"
    assert record["inference"]["reason"].startswith("probe: fp32 3.00x faster")
    assert set(json.loads((folder / PRECISION_PROBE_FILE).read_text())) == {"train", "infer"}

    from medilab import run

    chosen = []
    real = run.build_inference_trainer

    def spy(config, model=None, choice=None):
        chosen.append(choice)
        return real(config, model, choice)

    monkeypatch.setattr(precision_probe, "seconds_per_step", lambda step: 1 / 0)  # no re-probe
    monkeypatch.setattr(run, "build_inference_trainer", spy)
    run.evaluate(folder)
    assert chosen[0].precision == "32-true" and chosen[0].reason.startswith("cached probe")


def test_first_batch_takes_the_loader_order_without_iterating_it():
    data = torch.utils.data.TensorDataset(torch.arange(10.0))
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True)
    assert first_batch(loader)[0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert build_inference_trainer(_config()).precision == "32-true"
