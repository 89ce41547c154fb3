"""Ensembles of runs: created from compatible runs only, evaluated and used like a run."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medilab import api, cli
from medilab.config import validate_config
from medilab.errors import InputFileError, MedilabError
from medilab.runfolder import load_run_config
from medilab.tasks.registry import get_task_family
from medilab.trained import load_module
from segmentation_samples import circles_config, write_circles


@pytest.fixture(scope="module")
def member_runs(tmp_path_factory):
    """Two tiny U-Nets of different widths on the same split, and one on another split."""
    tmp = tmp_path_factory.mktemp("ensemble")
    root = write_circles(tmp / "data")
    runs = []
    for name, seed, width in (("a", 0, 4), ("b", 0, 6), ("other_split", 1, 4)):
        raw = circles_config(root, seed=seed)
        raw["model"]["kwargs"]["base_width"] = width
        raw["trainer"]["max_epochs"] = 2
        runs.append(api.train(validate_config(raw), run_dir=tmp / name, evaluate_after=False))
    return root, runs


def test_ensemble_is_evaluated_and_predicts_the_mean_probability(member_runs, tmp_path):
    root, (run_a, run_b, _) = member_runs
    out = tmp_path / "ens"
    metrics = api.ensemble([run_a, run_b], out)
    assert metrics["splits"]["val"]["dice"]["value"] > 0
    spec = json.loads((out / "ensemble.json").read_text())
    assert spec == {"members": [str(run_a.resolve()), str(run_b.resolve())], "checkpoint": "best"}
    assert load_run_config(out).experiment == "circles_ensemble"
    assert pd.read_csv(out / "splits.csv").equals(pd.read_csv(run_a / "splits.csv"))
    assert (out / "report.html").is_file() and (out / "predictions_val.csv").is_file()

    family = get_task_family("segmentation")
    x = torch.randn(1, 1, 24, 28)
    members = [load_module(r, family, load_run_config(r)).model for r in (run_a, run_b)]
    ensemble = load_module(out, family, load_run_config(out))
    with torch.no_grad():
        mean = (torch.softmax(members[0](x), 1) + torch.softmax(members[1](x), 1)) / 2
        assert torch.allclose(torch.softmax(ensemble.model(x), 1), mean, atol=1e-5)
    image = x[0].numpy()
    probs = ensemble.probabilities(image)  # sliding window over the ensemble
    assert probs.shape == (2, 24, 28) and np.allclose(probs.sum(0), 1, atol=1e-5)

    masks = api.predict(out, root / "images" / "01.png", tmp_path / "pred")
    assert np.asarray(Image.open(masks / "01_mask.png")).shape == (24, 28)


def test_incompatible_runs_are_refused(member_runs, tmp_path):
    _, (run_a, _, other) = member_runs
    with pytest.raises(InputFileError, match="splits.csv: differs from .*hold out the same"):
        api.ensemble([run_a, other], tmp_path / "e1")
    with pytest.raises(MedilabError, match="at least two run folders"):
        api.ensemble([run_a], tmp_path / "e2")
    with pytest.raises(InputFileError, match="run folder not found"):
        api.ensemble([run_a, tmp_path / "missing"], tmp_path / "e3")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(InputFileError, match="busy: already exists and is not empty"):
        api.ensemble([run_a, run_a], tmp_path / "busy")
    assert not (tmp_path / "e1").exists() and not (tmp_path / "e3").exists()


def test_cli_ensemble_prints_metrics(member_runs, tmp_path, capsys):
    _, (run_a, run_b, _) = member_runs
    with pytest.raises(SystemExit) as done:
        cli.main(["ensemble", str(run_a), str(run_b), "--run-dir", str(tmp_path / "ens")])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    assert "val (selection set, in-sample for what was fitted on it): dice" in printed
    assert "no held-out test part" in printed and "report:" in printed


def test_classification_ensemble_averages_probabilities(tmp_path, digits_config,
                                                         make_digits_csv):
    run_a = api.train(digits_config, run_dir=tmp_path / "a", evaluate_after=False)
    run_b = api.train(digits_config, ["model.kwargs.hidden_sizes=[48, 16]"],
                      run_dir=tmp_path / "b", evaluate_after=False)
    metrics = api.ensemble([run_a, run_b], tmp_path / "ens")
    assert metrics["n"]["val"] == 40 and 0 <= metrics["splits"]["val"]["accuracy"]["value"] <= 1
    frame = pd.read_csv(tmp_path / "ens" / "predictions_val.csv")
    family = get_task_family("classification")
    members = [load_module(r, family, load_run_config(r)) for r in (run_a, run_b)]
    batch = {"image": torch.rand(5, 1, 8, 8)}
    ensemble = load_module(tmp_path / "ens", family, load_run_config(tmp_path / "ens"))
    with torch.no_grad():
        mean = sum(torch.softmax(m(batch), 1) for m in members) / 2
        assert torch.allclose(torch.softmax(ensemble(batch), 1), mean, atol=1e-5)
    assert len(frame) == 40
    test_csv = make_digits_csv(tmp_path / "test.csv", n=12, labelled=False)
    submission = api.predict(tmp_path / "ens", test_csv, tmp_path / "submission.csv")
    assert list(pd.read_csv(submission).columns) == ["ImageId", "Label"]
    assert len(pd.read_csv(submission)) == 12


def test_an_ensemble_of_calibrated_members_averages_their_calibrated_probabilities(
        tmp_path, digits_config):
    """Each member enters the ensemble as its evaluation fitted it (temperature from its
    fitted.json), not as the raw network."""
    overrides = ["evaluation.temperature_scaling=true", "evaluation.bootstrap_samples=0"]
    run_a = api.train(digits_config, overrides, run_dir=tmp_path / "a")
    run_b = api.train(digits_config, [*overrides, "model.kwargs.hidden_sizes=[48, 16]"],
                      run_dir=tmp_path / "b")
    temperatures = [json.loads((r / "fitted.json").read_text())["temperature"]
                    for r in (run_a, run_b)]
    assert all(abs(t - 1.0) > 1e-3 for t in temperatures)
    api.ensemble([run_a, run_b], tmp_path / "ens")
    family = get_task_family("classification")
    raw = [load_module(r, family, load_run_config(r), fitted=False) for r in (run_a, run_b)]
    ensemble = load_module(tmp_path / "ens", family, load_run_config(tmp_path / "ens"))
    batch = {"image": torch.rand(5, 1, 8, 8)}
    with torch.no_grad():
        mean = sum(torch.softmax(m(batch) / t, 1) for m, t in zip(raw, temperatures,
                                                                  strict=True)) / 2
        ensemble_probs = torch.softmax(ensemble(batch) / ensemble.temperature, 1)
        if ensemble.temperature == 1.0:
            assert torch.allclose(ensemble_probs, mean, atol=1e-5)
        else:  # the ensemble's own temperature, fitted on val, on top of the members'
            scaled = torch.softmax(torch.log(mean) / ensemble.temperature, 1)
            assert torch.allclose(ensemble_probs, scaled, atol=1e-5)
