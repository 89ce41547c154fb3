"""ONNX / TorchScript export with the probability parity check, and predict on onnxruntime."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import yaml

from medilab import export as export_module
from medilab.api import export, predict
from medilab.cli import main
from medilab.errors import MedilabError
from medilab.export import OnnxModel, default_export_path
from medilab.run import train
from segmentation_samples import circles_config, write_circles

pytest.importorskip("onnxruntime")

QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
         "trainer.precision=32-true"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from digits_samples import write_digits_csv

    root = tmp_path_factory.mktemp("digits")
    csv = write_digits_csv(root / "train.csv", n=120)
    config = root / "digits.yaml"
    config.write_text(yaml.safe_dump({
        "experiment": "digits", "seed": 1,
        "data": {"source": "pixel_csv", "train_csv": str(csv), "pixel_scale": 16,
                 "batch_size": 32},
        "model": {"name": "simple_nn", "kwargs": {"hidden_sizes": [16]}},
        "trainer": {"progress_bar": False},
    }))
    return train(config, QUICK, run_dir=root / "run")


@pytest.fixture(scope="module")
def circles_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("circles")
    config = root / "circles.yaml"
    config.write_text(yaml.safe_dump(circles_config(write_circles(root / "data", n=4))))
    return train(config, QUICK, run_dir=root / "run")


def test_onnx_export_of_a_classifier_matches_pytorch(digits_run):
    result = export(digits_run, "onnx")
    assert result.path == default_export_path(digits_run, "onnx") and result.path.is_file()
    assert result.max_abs_diff <= 1e-4
    assert result.inputs == {"image": ["batch", 1, 8, 8]}
    assert result.checked_on == "validation samples"
    assert json.loads(result.path.with_suffix(".json").read_text())["max_abs_diff"] == (
        result.max_abs_diff)
    probs = torch.softmax(OnnxModel(result.path)(torch.zeros(3, 1, 8, 8)), dim=1)
    assert probs.shape == (3, 10)
    assert torch.allclose(probs.sum(1), torch.ones(3), atol=1e-5)


def test_predict_on_onnxruntime_writes_the_same_columns(digits_run, tmp_path):
    from digits_samples import write_digits_csv

    export(digits_run, "onnx")
    inputs = write_digits_csv(tmp_path / "test.csv", n=40, labelled=False, seed=3)
    by_torch = pd.read_csv(predict(digits_run, inputs, tmp_path / "torch.csv"))
    by_onnx = pd.read_csv(predict(digits_run, inputs, tmp_path / "onnx.csv",
                                  engine="onnxruntime"))
    assert list(by_onnx.columns) == list(by_torch.columns) == ["ImageId", "Label"]
    pd.testing.assert_frame_equal(by_onnx, by_torch)


def test_torchscript_export_of_a_segmentation_model_through_the_cli(circles_run, tmp_path,
                                                                    capsys):
    out = tmp_path / "unet.pt"
    with pytest.raises(SystemExit) as exited:
        main(["export", "--format", "torchscript", "--out", str(out), str(circles_run)])
    assert exited.value.code == 0
    printed = capsys.readouterr().out
    assert "max abs probability difference vs PyTorch" in printed and str(out) in printed
    scripted = torch.jit.load(str(out))
    assert scripted(torch.zeros(1, 1, 32, 32)).shape == (1, 2, 32, 32)


def test_onnx_segmentation_export_has_dynamic_spatial_axes(circles_run):
    result = export(circles_run, "onnx")
    assert result.inputs == {"image": ["batch", 1, "height", "width"]}
    assert result.checked_on == "random inputs"
    assert OnnxModel(result.path)(torch.zeros(2, 1, 48, 64)).shape == (2, 2, 48, 64)


def test_export_above_the_tolerance_is_refused_and_leaves_no_file(digits_run, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setattr(export_module, "max_probability_difference", lambda *a: 0.5)
    out = tmp_path / "new" / "model.onnx"
    with pytest.raises(MedilabError, match="differ from PyTorch's by 5.00e-01"):
        export(digits_run, "onnx", out)
    assert not out.parent.exists()


def test_unknown_format_and_missing_export_are_one_line_errors(digits_run, tmp_path):
    with pytest.raises(MedilabError, match="format 'tflite' unknown"):
        export(digits_run, "tflite")
    with pytest.raises(MedilabError, match="not found"):
        OnnxModel(tmp_path / "none.onnx")


def test_detection_runs_are_refused(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import medilab.runfolder

    monkeypatch.setattr(medilab.runfolder, "load_run_config",
                        lambda run_dir: SimpleNamespace(task="detection"))
    with pytest.raises(MedilabError, match="Faster R-CNN"):
        export(tmp_path, "onnx")


def test_without_the_runs_data_the_check_uses_random_inputs(digits_run, tmp_path, monkeypatch):
    import medilab.config
    from medilab.errors import ConfigError

    def missing(config):
        raise ConfigError("data.train_csv: not found")

    monkeypatch.setattr(medilab.config, "check_data_paths", missing)
    result = export(digits_run, "torchscript", tmp_path / "model.pt")
    assert result.checked_on == "random inputs" and result.max_abs_diff <= 1e-4


def test_the_exported_model_is_the_evaluated_one_after_temperature_scaling(digits_run, tmp_path):
    """The temperature fitted on val travels with the export: onnxruntime's probabilities on
    val images equal those evaluation wrote, and predict on onnxruntime does not divide twice."""
    import shutil

    from medilab.run import evaluate

    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    config = run / "config.yaml"
    raw = yaml.safe_load(config.read_text())
    raw["evaluation"]["temperature_scaling"] = True
    config.write_text(yaml.safe_dump(raw))
    metrics = evaluate(run)
    temperature = metrics["temperature"]["value"]
    assert abs(temperature - 1.0) > 1e-3
    result = export(run, "onnx")
    assert result.max_abs_diff <= 1e-4
    from medilab.runfolder import load_run_config
    from medilab.tasks.registry import get_task_family
    from medilab.trained import load_module

    family = get_task_family("classification")
    datamodule = family.build_datamodule(load_run_config(run),
                                         pd.read_csv(run / "splits.csv", dtype=str))
    images = torch.cat([batch["image"] for batch in datamodule.loader("val")])
    written = pd.read_csv(run / "predictions_val.csv")
    expected = torch.tensor(written[[f"prob_{k}" for k in range(10)]].to_numpy(),
                            dtype=torch.float32)
    onnx_probs = torch.softmax(OnnxModel(result.path)(images), dim=1)
    assert torch.allclose(onnx_probs, expected, atol=2e-5)
    module = load_module(run, family, load_run_config(run))
    assert module.temperature == pytest.approx(temperature)
    module, _ = export_module.use_engine(module, load_run_config(run), run, "onnxruntime")
    assert module.temperature == 1.0


def test_predict_finds_an_export_written_elsewhere_or_takes_model(digits_run, tmp_path,
                                                                  capsys):
    from digits_samples import write_digits_csv

    elsewhere = tmp_path / "shipped" / "digits.onnx"
    assert main_code(["export", str(digits_run), "--format", "onnx", "--out",
                      str(elsewhere)]) == 0
    assert "precision: both sides fp32 (onnx runs fp32); `predict --engine torch` here runs " \
        "32-true" in capsys.readouterr().out
    inputs = write_digits_csv(tmp_path / "test.csv", n=20, labelled=False, seed=4)
    by_torch = pd.read_csv(predict(digits_run, inputs, tmp_path / "torch.csv"))
    recorded = pd.read_csv(predict(digits_run, inputs, tmp_path / "onnx.csv",
                                   engine="onnxruntime"))  # where export wrote, recorded
    pd.testing.assert_frame_equal(recorded, by_torch)
    moved = tmp_path / "moved.onnx"
    elsewhere.rename(moved)
    with pytest.raises(MedilabError, match="digits.onnx: exported model not found"):
        predict(digits_run, inputs, tmp_path / "x.csv", engine="onnxruntime")
    given = pd.read_csv(predict(digits_run, inputs, tmp_path / "given.csv",
                                engine="onnxruntime", model=moved))
    pd.testing.assert_frame_equal(given, by_torch)
    with pytest.raises(MedilabError, match="--model names an exported model"):
        predict(digits_run, inputs, tmp_path / "y.csv", model=moved)
    export(digits_run, "onnx")  # the default place again, for the other tests


def test_parity_is_fp32_against_fp32_and_the_predict_precision_is_stated(digits_run, tmp_path,
                                                                         monkeypatch):
    from medilab.precision import PrecisionChoice

    chosen = PrecisionChoice("bf16-mixed", False, "a cached inference probe")
    monkeypatch.setattr(export_module, "phase_choice", lambda *a, **k: chosen)
    result = export(digits_run, "onnx", tmp_path / "m.onnx")
    assert result.compared_precision == "32-true" and result.max_abs_diff <= 1e-5
    assert result.predict_precision == "bf16-mixed"
    assert result.predict_max_abs_diff > 10 * max(result.max_abs_diff, 1e-7)
    assert "runs bf16-mixed" in result.precision_line()
    export(digits_run, "onnx")


def main_code(args):
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
