"""The medmnist source: the file's own split, a test part evaluated, 3D volumes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cli_samples import run_cli
from medilab import api
from medilab.config import validate_config
from medilab.data.sources.medmnist import MedMNISTSource
from medilab.errors import ConfigError, InputFileError
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
    check_predict_and_explain(run, tmp_path)


def check_predict_and_explain(run, tmp_path):
    """predict on the npz, a folder of PNGs and one PNG gives the probabilities evaluation
    gave the same images; explain draws them; unusable inputs are error rows or an error."""
    val = pd.read_csv(run / "predictions_val.csv", dtype={"sample_id": str})
    prob = [c for c in val.columns if c.startswith("prob_")][-1]
    frame = pd.read_csv(api.predict(run, tmp_path / "m.npz", tmp_path / "all.csv"))
    assert len(frame) == 64 and frame["error"].isna().all()
    got = frame.set_index("image").loc[val["sample_id"], prob].to_numpy()
    np.testing.assert_allclose(got, val[prob], atol=1e-5)

    pngs = tmp_path / "pngs"
    pngs.mkdir()
    with np.load(tmp_path / "m.npz") as data:
        for i in range(3):
            Image.fromarray(data["val_images"][i]).save(pngs / f"val_{i}.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(pngs / "z_big.png")
    with pytest.warns(UserWarning, match="1 of 4 input"):
        frame = pd.read_csv(api.predict(run, pngs, tmp_path / "pngs.csv"),
                            keep_default_na=False)
    assert list(frame["image"]) == ["val_0.png", "val_1.png", "val_2.png", "z_big.png"]
    np.testing.assert_allclose(frame[prob][:3].astype(float), val[prob][:3], atol=1e-5)
    assert "trained on 12x12" in frame["error"][3]
    one = pd.read_csv(api.predict(run, pngs / "val_1.png", tmp_path / "one.csv"))
    assert one[prob][0] == pytest.approx(val[prob][1], abs=1e-5)
    with pytest.raises(InputFileError, match="none of the 1 input"):
        api.predict(run, pngs / "z_big.png", tmp_path / "none.csv")
    assert not (tmp_path / "none.csv").exists()

    pytest.importorskip("onnxruntime")
    api.export(run, "onnx")
    onnx = pd.read_csv(api.predict(run, tmp_path / "m.npz", tmp_path / "onnx.csv",
                                   engine="onnxruntime"))
    np.testing.assert_allclose(onnx[prob], pd.read_csv(tmp_path / "all.csv")[prob], atol=1e-4)

    cams = api.explain(run, pngs / "val_1.png", tmp_path / "cams", "gradcam")
    assert [p.name for p in cams] == ["val_1_gradcam.png"]
    assert run_cli("explain", run, pngs / "val_0.png", pngs / "val_2.png", "--out",
                   tmp_path / "two", "--method", "eigencam") == 0  # several files
    assert sorted(p.name for p in (tmp_path / "two").glob("*.png")) == [
        "val_0_eigencam.png", "val_2_eigencam.png"]
    with pytest.raises(InputFileError, match="z_big.png"):
        api.explain(run, pngs, tmp_path / "cams", "eigencam")


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
    trainer = build_inference_trainer(cfg, raw_module)
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


def test_class_names_from_the_label_dictionary_and_a_chosen_positive_class(tmp_path):
    path = write_npz(tmp_path / "breastmnist.npz", test=False)
    raw = MedMNISTSource().build_datamodule(config(path), None)
    assert raw.class_names == ["malignant", "normal, benign"]
    chosen = config(path)
    chosen.data.positive_class = "malignant"
    flipped = MedMNISTSource().build_datamodule(chosen, None)
    assert flipped.class_names == ["normal, benign", "malignant"]  # positive served as 1
    np.testing.assert_array_equal(flipped.labels("val"), 1 - raw.labels("val"))
    renamed = config(path)
    renamed.data.class_names = ["cancer", "no cancer"]
    renamed.data.positive_class = "cancer"
    assert MedMNISTSource().build_datamodule(renamed, None).class_names == ["no cancer",
                                                                              "cancer"]
    renamed.data.positive_class = "tumour"
    with pytest.raises(ConfigError, match="data.positive_class: 'tumour' is not one of"):
        MedMNISTSource().build_datamodule(renamed, None)
    renamed.data.class_names = ["only one"]
    renamed.data.positive_class = None
    with pytest.raises(ConfigError, match=r"data.class_names: 1 name\(s\)"):
        MedMNISTSource().build_datamodule(renamed, None)
    other = write_npz(tmp_path / "mine.npz", test=False)
    assert MedMNISTSource().build_datamodule(config(other), None).class_names == ["0", "1"]


def test_pages_name_the_classes_and_the_positive_one():
    from medilab.reports.report import class_facts

    facts = dict(class_facts({"class_names": ["normal, benign", "malignant"],
                              "positive_class": "malignant"}))
    assert facts["classes"] == "0 = normal, benign · 1 = malignant"
    assert facts["positive class"].startswith("malignant")
