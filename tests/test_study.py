"""medilab study: members trained alike, summary equal to each member's metrics, resume."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pandas as pd
import pytest
import yaml

from cli_samples import Forked, run_cli
from medilab import api
from medilab.errors import ConfigError
from medilab.study import load_study, mismatch_notices, paired_auroc
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


def test_study_trains_summarizes_and_resumes(tmp_path, capsys):
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
    # again with another epoch budget: refused naming the field, nothing trained
    assert run_cli("study", write_study(tmp_path, test_fraction=0.25), "--out", out,
                   "-o", "trainer.max_epochs=2") == 2
    assert "trainer.max_epochs=1, the study now asks 2" in capsys.readouterr().err
    assert os.path.getmtime(out / "narrow" / "checkpoints" / "best.ckpt") == stamp
    # with force: every changed member trained again with the new budget
    with pytest.warns(UserWarning, match="config changed"):
        api.study(write_study(tmp_path, test_fraction=0.25), out, ["trainer.max_epochs=2"],
                  force=True)
    for member in ("narrow", "wide"):
        status = json.loads((out / member / "status.json").read_text())
        assert status["training"]["epochs_run"] == 2
    assert "Warning" not in (out / "study.html").read_text()
    assert run_cli("evaluate", out) == 2  # a study folder is not a run folder: say what to run
    assert f"a study folder, not a run folder; evaluate one member (`medilab evaluate " \
        f"{out / 'narrow'}" in capsys.readouterr().err
    (out / "study.html").unlink()
    (out / "wide" / "report.html").unlink()
    assert api.write_report(out) == out / "study.html"  # `medilab report` on the folder
    page = (out / "study.html").read_text()
    assert "narrow" in page and "wide" in page and (out / "wide" / "report.html").is_file()


THREE = {name: {"model": {"name": "convnet", "kwargs": {"widths": [width], "convs": 1}}}
         for name, width in (("narrow", 4), ("wide", 8), ("mid", 6))}


@pytest.mark.usefixtures("one_torch_thread")  # forked children must not inherit a thread pool
def test_members_trained_at_once_by_separate_processes_then_assembled(tmp_path, capsys):
    """Two processes train one member each at the same time (racing for the shared split);
    neither touches the third member; the plain command trains only that one and assembles."""
    path, out = write_study(tmp_path, THREE, test_fraction=0.25), tmp_path / "out"
    assert run_cli("study", path, "--out", out, "--member", "medium") == 2
    err = capsys.readouterr().err
    assert f"error: {path}: --member 'medium' is not a member of the study (members: mid, " \
        "narrow, wide; or their index 0 to 2)" in err and err.count("\n") == 1
    assert not out.exists()

    workers = [Forked(("study", path, "--out", out, "--member", member),
                      tmp_path / f"{member}.txt") for member in ("narrow", "2")]  # 2: by index
    codes = [worker.wait(timeout=180) for worker in workers]
    assert codes == [0, 0], [(tmp_path / f"{m}.txt").read_text()[-2000:] for m in ("narrow", "2")]
    assert "member wide is trained and evaluated" in (tmp_path / "2.txt").read_text()
    assert (out / "narrow" / "study_member.json").is_file()
    assert (out / "wide" / "study_member.json").is_file() and not (out / "mid").exists()
    assert not (out / "summary.csv").exists() and not (out / "study.html").exists()
    assert not list(out.glob(".*"))  # locks given back, no temporary file left
    shared = (out / "splits.csv").read_bytes()
    assert (out / "narrow" / "splits.csv").read_bytes() == shared
    assert (out / "wide" / "splits.csv").read_bytes() == shared
    assert run_cli("study", path, "--out", out, "--assemble-only") == 2
    assert "cannot assemble, 1 of 3 members not finished: mid (not started)" in \
        capsys.readouterr().err
    assert not (out / "summary.csv").exists()
    # held by another live process: left to it, and the page is not assembled
    (out / ".mid.lock").write_text(json.dumps({"pid": os.getppid(),
                                               "host": socket.gethostname()}))
    assert run_cli("study", path, "--out", out) == 2
    assert "not assembled, 1 member(s) still being trained by other processes: mid (pid " \
        f"{os.getppid()}" in capsys.readouterr().err
    assert not (out / "mid").exists() and not (out / "summary.csv").exists()
    (out / ".mid.lock").unlink()

    stamps = {m: os.path.getmtime(out / m / "checkpoints" / "best.ckpt") for m in ("narrow",
                                                                                   "wide")}
    assert run_cli("study", path, "--out", out) == 0  # trains the missing member, assembles
    assert stamps == {m: os.path.getmtime(out / m / "checkpoints" / "best.ckpt")
                      for m in ("narrow", "wide")}
    assert (out / "mid" / "splits.csv").read_bytes() == shared
    assert run_cli("study", path, "--out", out, "--member", "mid") == 0  # finished: kept
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["member"]) == ["mid", "narrow", "wide"] * 2  # the file's order
    for member in THREE:
        metrics = json.loads((out / member / "metrics.json").read_text())
        row = summary[summary["member"] == member].iloc[0]
        assert row["split"] == "test"
        assert row["auroc"] == pytest.approx(metrics["splits"]["test"]["auroc"]["value"])
    assert len(pd.read_csv(out / "paired.csv")) == 3
    assert (out / "study.html").is_file() and (out / "predictions" / "mid_test.csv").is_file()


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
    assert row["p_holm"] <= 3 * row["p_value"] + 1e-12 and row["p_holm"] < 0.05
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


def test_members_at_different_precisions_or_budgets_are_named():
    settings = {"a": {"max_epochs": 3, "precision": "32-true", "seed": 0},
                "b": {"max_epochs": 3, "precision": "bf16-mixed", "seed": 0},
                "c": {"max_epochs": 2, "precision": "32-true", "seed": 0}}
    notices = mismatch_notices(settings)
    assert len(notices) == 2
    assert "epoch budget" in notices[0] and "c 2" in notices[0]
    assert "precision" in notices[1] and "b bf16-mixed" in notices[1]
    assert mismatch_notices({m: {**s, "max_epochs": 3, "precision": "32-true"}
                             for m, s in settings.items()}) == []


def test_misspelled_fusion_kwarg_exits_2_naming_it(tmp_path, capsys):
    config = {"task": "classification",
              "data": {"source": "medmnist", "path": str(write_npz(tmp_path / "d.npz"))},
              "model": {"name": "fusion_early", "kwargs": {"slicez": 3}},
              "trainer": {"max_epochs": 1, "progress_bar": False}}
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config))
    assert run_cli("train", path, "--run-dir", tmp_path / "run") == 2
    assert "model.kwargs.slicez: unknown argument for model 'fusion_early'" in \
        capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    study = write_study(tmp_path, {"early": {"model": {"name": "fusion_early",
                                                       "kwargs": {"slicez": 3}}}})
    assert run_cli("study", study, "--out", tmp_path / "s") == 2
    assert "member 'early': model.kwargs.slicez" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_holm_correction_of_the_pairwise_p_values():
    from medilab.study import holm_adjust

    np.testing.assert_allclose(holm_adjust(np.array([0.01, 0.04, 0.03])), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm_adjust(np.array([0.5, 0.001])), [0.5, 0.002])
    # ten pairs at p = 0.02 each: none survives the correction
    assert (holm_adjust(np.full(10, 0.02)) == 0.2).all()
