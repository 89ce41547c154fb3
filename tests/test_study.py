"""medilab study: members trained alike, summary equal to each member's metrics, resume."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import yaml

from medilab import api
from medilab.errors import ConfigError
from medilab.study import load_study, paired_auroc
from study_samples import write_npz


def write_study(tmp_path, members=None, **data):
    base = {"task": "classification", "seed": 1,
            "data": {"source": "medmnist", "path": str(write_npz(tmp_path / "d.npz")),
                     "batch_size": 8, **data},
            "model": {"name": "convnet", "kwargs": {"widths": [4], "convs": 1}},
            "trainer": {"max_epochs": 1, "progress_bar": False},
            "evaluation": {"bootstrap_samples": 20}}
    members = members or {
        "narrow": {"model": {"name": "convnet", "kwargs": {"widths": [4], "convs": 1}}},
        "wide": {"model": {"name": "convnet", "kwargs": {"widths": [8, 8], "convs": 1}}},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"study": "tiny", "base": base, "members": members}))
    return path


def test_invalid_member_stops_before_training(tmp_path):
    path = write_study(tmp_path, {"ok": {}, "broken": {"trainer": {"max_epochs": 0}}})
    with pytest.raises(ConfigError, match="member 'broken'.*max_epochs"):
        api.study(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_member_model_replaces_base_model(tmp_path):
    _, configs = load_study(write_study(tmp_path))
    assert configs["wide"].model.kwargs == {"widths": [8, 8], "convs": 1}
    assert configs["narrow"].experiment == "tiny_narrow"


def test_study_trains_summarizes_and_resumes(tmp_path):
    """The npz has no test part: data.test_fraction holds one out of its train part; the
    summary leads with it and the paired tests use it."""
    out = tmp_path / "out"
    summary = api.study(write_study(tmp_path, test_fraction=0.25), out)
    assert list(summary["member"]) == ["narrow", "wide", "narrow", "wide"]
    assert list(summary["split"]) == ["test", "test", "val", "val"]
    assert summary["role"].iloc[0] == "held out"
    for member in ("narrow", "wide"):
        metrics = json.loads((out / member / "metrics.json").read_text())
        row = summary[summary["member"] == member].iloc[0]
        assert row["auroc"] == pytest.approx(metrics["splits"]["test"]["auroc"]["value"])
        assert row["n"] == metrics["n"]["test"] and 8 <= row["n"] <= 20
        assert row["parameters"] > 0
        assert metrics["n"]["val"] == 16  # the file's own val part is kept
        assert (out / "predictions" / f"{member}_test.csv").is_file()
    assert pd.read_csv(out / "narrow" / "splits.csv").equals(
        pd.read_csv(out / "wide" / "splits.csv"))
    paired = pd.read_csv(out / "paired.csv")
    assert list(paired["split"]) == ["test"]
    assert (out / "study.html").is_file()
    assert "test: held out" in (out / "study.html").read_text()
    stamp = os.path.getmtime(out / "narrow" / "checkpoints" / "best.ckpt")
    api.study(write_study(tmp_path, test_fraction=0.25), out)  # again: finished members kept
    assert os.path.getmtime(out / "narrow" / "checkpoints" / "best.ckpt") == stamp
    (out / "study.html").unlink()
    (out / "wide" / "report.html").unlink()
    assert api.write_report(out) == out / "study.html"  # `medilab report` on the folder
    page = (out / "study.html").read_text()
    assert "narrow" in page and "wide" in page and (out / "wide" / "report.html").is_file()


def test_paired_bootstrap_finds_a_real_difference():
    rng = np.random.default_rng(0)
    y = np.arange(200) % 2
    good = np.clip(0.5 * y + 0.5 * rng.random(200), 0, 1)
    noise = rng.random(200)
    frames = {(m, "val"): pd.DataFrame({"sample_id": [str(i) for i in range(200)], "label": y,
                                        "prob_0": 1 - p, "prob_1": p})
              for m, p in (("good", good), ("noise", noise), ("good2", good))}
    table = paired_auroc(frames, ["good", "noise", "good2"], num_bootstraps=300)
    row = table[(table.a == "good") & (table.b == "noise")].iloc[0]
    assert row["significant"] and row["auroc_difference"] > 0.3 and row["p_value"] < 0.01
    same = table[(table.a == "good") & (table.b == "good2")].iloc[0]
    assert not same["significant"] and same["auroc_difference"] == 0


def test_paired_bootstrap_p_values_are_roughly_uniform_without_a_real_difference():
    """Two members whose scores come from the same distribution (independent noise around the
    same signal): over many replicate data sets the p-value is about uniform, so about 5 % of
    them fall under 0.05."""
    from scipy.stats import kstest

    rng = np.random.default_rng(1)
    y = np.arange(80) % 2
    ids = [str(i) for i in range(80)]
    p_values = []
    for _ in range(80):
        frames = {}
        for member in ("a", "b"):
            p = 1 / (1 + np.exp(-(1.0 * y + rng.normal(size=80))))
            frames[(member, "test")] = pd.DataFrame({"sample_id": ids, "label": y,
                                                     "prob_0": 1 - p, "prob_1": p})
        table = paired_auroc(frames, ["a", "b"], num_bootstraps=200,
                             seed=int(rng.integers(1 << 30)))
        p_values.append(float(table["p_value"].iloc[0]))
    p_values = np.asarray(p_values)
    assert (p_values < 0.05).mean() <= 0.15
    assert 0.3 < p_values.mean() < 0.7
    assert kstest(p_values, "uniform").pvalue > 0.001
