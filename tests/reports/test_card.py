"""medilab card: a model card built from the run folder's files, checked against those files
(splits.csv, the data table, metrics.json) on a tiny image table with patients, age, sex and a
held-out test part; a study folder gives one card per member plus the study's."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from cli_samples import run_cli
from medilab import api
from medilab.config import CardConfig, validate_config
from medilab.reports.card.checklists import AUTHOR, CLAIM, FILLED, PARTLY, TRIPOD_AI
from medilab.reports.card.facts import fitted_on_val
from medilab.reports.card.runinfo import RunInfo
from study_samples import write_npz

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PATIENT = "PATQX{:03d}"  # distinctive patient ids: none may appear on a card


def write_table(root, n=40):
    """One bright-centre class ('finding', 1 in 4 patients) and 'none'; 2 images per patient,
    age and sex per patient, one age missing."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        patient = i // 2
        label = "finding" if patient % 4 == 0 else "none"
        image = rng.integers(0, 80, (12, 12)).astype(np.uint8)
        if label == "finding":
            image[4:8, 4:8] = 220
        Image.fromarray(image).save(root / "images" / f"img{i:03d}.png")
        rows.append({"image": f"img{i:03d}.png", "patient_id": PATIENT.format(patient),
                     "age": np.nan if i == 5 else 30 + 3 * patient,
                     "sex": "F" if patient % 2 else "M", "label": label})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


@pytest.fixture(scope="module")
def card_run(tmp_path_factory):
    """A trained and evaluated run (evaluate writes the card beside report.html)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("card")
    root = write_table(tmp / "data")
    config = validate_config({
        "experiment": "tiny_card", "task": "classification", "seed": 3,
        "data": {"source": "image_table", "root": str(root), "batch_size": 8,
                 "val_fraction": 0.3, "test_fraction": 0.25},
        "model": {"name": "convnet", "kwargs": {"widths": [4], "convs": 1}},
        "trainer": {"max_epochs": 1, "progress_bar": False},
        "evaluation": {"bootstrap_samples": 20},
        "card": {"intended_use": "Teaching only.", "funding": "None."},
    })
    run = api.train(config, run_dir=tmp / "run")
    torch.set_num_threads(threads)
    return run, root


def _splits(run):
    return pd.read_csv(run / "splits.csv", dtype=str)


def test_evaluate_writes_card_beside_report_and_flow_equals_splits(card_run):
    run, _ = card_run
    assert {"report.html", "model_card.md", "model_card.html"} <= {p.name for p in
                                                                    run.iterdir()}
    splits = _splits(run)
    with Image.open(run / "plots" / "card_flow.png") as image:
        drawn = json.loads(image.info["Description"])
    assert drawn["rows_read"] == 40 and drawn["excluded"] == 0
    expected = {s: {"images": int(len(part)), "patients": int(part["patient_id"].nunique())}
                for s, part in splits.groupby("split")}
    assert drawn["partitions"] == expected and set(expected) == {"train", "val", "test"}
    html = (run / "model_card.html").read_text()
    assert "data:image/png;base64," in html  # the diagram is embedded: offline
    for split, counts in expected.items():
        cell = re.search(rf'data-split="{split}">(\d+) images, (\d+) patients', html)
        assert cell and (int(cell[1]), int(cell[2])) == (counts["images"], counts["patients"])


def test_characteristics_equal_the_data(card_run):
    run, root = card_run
    table = pd.read_csv(root / "metadata.csv")
    table["sample_id"] = table["image"].str.removesuffix(".png")
    data = _splits(run).drop(columns=["patient_id", "label"]).merge(table, on="sample_id")
    md = (run / "model_card.md").read_text()
    section = md.split("### Characteristics by partition")[1].split("## Training")[0]
    lines = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
             if line.startswith("|") and "---" not in line]
    header, rows = lines[0], lines[1:]
    splits = header[2:-1]
    assert splits == ["train", "val", "test"]
    current = None
    seen = set()
    for row in rows:
        current = row[0] or current
        level = row[1]
        if current in ("sex", "label"):
            for split, cell in zip(splits, row[2:-1], strict=True):
                part = data[data["split"] == split]
                assert int(cell.split()[0]) == int((part[current] == level).sum()), (current,
                                                                                    level)
            seen.add(current)
        if current == "age" and level == "missing":
            assert [int(c) for c in row[2:-1]] == [
                int(data.loc[data["split"] == s, "age"].isna().sum()) for s in splits]
            seen.add("age")
        if current == "age" and level == "mean ± SD":
            means = [float(c.split()[0]) for c in row[2:-1]]
            assert means == pytest.approx([data.loc[data["split"] == s, "age"].mean()
                                           for s in splits], abs=0.05)
    assert seen == {"sex", "label", "age"}
    assert "chi-square, p = " in section and "Kruskal-Wallis, p = " in section


def test_held_out_figures_equal_metrics_json(card_run):
    run, _ = card_run
    metrics = json.loads((run / "metrics.json").read_text())
    md = (run / "model_card.md").read_text()
    test_block = md.split("### **test (n = ")[1].split("###")[0]
    assert metrics["headline"] == "test"
    for name, entry in metrics["splits"]["test"].items():
        row = f"| {name} | {entry['value']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}] |"
        assert row in test_block, name
    assert test_block.startswith(f"{metrics['n']['test']}): held out")


def test_applicable_limitations_and_author_fields(card_run):
    run, _ = card_run
    md = (run / "model_card.md").read_text()
    limits = md.split("## Limitations found in the run")[1].split("## Author's part")[0]
    n_test = json.loads((run / "metrics.json").read_text())["n"]["test"]
    assert f"The test part is small (n = {n_test} images)" in limits
    assert "Subgroups with fewer than 30 images" in limits
    assert "Class imbalance: in train the largest class has" in limits
    assert "random weights" in limits and "A single data source" in limits
    assert "No held-out test part" not in limits
    author = md.split("## Author's part")[1].split("## CLAIM")[0]
    assert "| intended_use | Teaching only. |" in author and "| funding | None. |" in author
    missing = [name for name in CardConfig.model_fields if name not in ("intended_use",
                                                                        "funding")]
    for name in missing:
        assert f"| {name} | to be supplied by the author |" in author


def test_checklists_have_every_item_with_a_status(card_run):
    run, _ = card_run
    md = (run / "model_card.md").read_text()
    claim = md.split("## CLAIM 2024 checklist")[1].split("## TRIPOD+AI")[0]
    rows = {r[0]: r[2] for r in ([c.strip() for c in line.strip("|").split("|")]
                                 for line in claim.splitlines() if line.startswith("| "))
            if r[0] != "item"}
    assert list(rows) == [str(k) for k in range(1, 43)] == [i.number for i in CLAIM]
    assert set(rows.values()) <= {FILLED, PARTLY, AUTHOR}
    assert rows["33"] == rows["34"] == rows["36"] == FILLED  # flow, characteristics, CIs
    assert rows["40"] == AUTHOR and rows["42"] == FILLED  # funding was supplied
    tripod = md.split("## TRIPOD+AI checklist")[1]
    numbers = [line.split("|")[1].strip() for line in tripod.splitlines()
               if line.startswith("| ") and not line.startswith("| item")]
    assert numbers == [i.number for i in TRIPOD_AI] and len(numbers) == 52


def test_no_patient_identifier_on_the_card(card_run):
    run, _ = card_run
    for name in ("model_card.md", "model_card.html"):
        text = (run / name).read_text()
        assert not re.search(r"PATQX\d{3}", text), name


def test_cli_card_and_bad_run(card_run, tmp_path, capsys):
    run, _ = card_run
    assert run_cli("card", run, "--out", tmp_path / "cards") == 0
    assert (tmp_path / "cards" / "model_card.html").is_file()
    assert (tmp_path / "cards" / "plots" / "card_flow.png").is_file()
    capsys.readouterr()
    assert run_cli("card", tmp_path / "missing") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing: run folder not found" in err
    (tmp_path / "empty").mkdir()
    assert run_cli("card", tmp_path / "empty") == 2
    assert "not a run folder" in capsys.readouterr().err


def test_val_test_shift_is_named():
    from medilab.reports.card.limitations import _val_test_shift
    from medilab.reports.card.population import DataRows

    table = pd.DataFrame({"sample_id": [f"s{i}" for i in range(40)],
                          "split": ["val"] * 20 + ["test"] * 20,
                          "age": list(range(20, 40)) + list(range(70, 90))})
    shift = _val_test_shift(DataRows(table, 40, "", ["age"]), [])
    assert len(shift) == 1 and shift[0].startswith("val and test differ in age (Kruskal")
    same = table.assign(age=list(range(20, 40)) * 2)
    assert _val_test_shift(DataRows(same, 40, "", ["age"]), []) == []


def test_study_folder_gives_a_card_per_member_and_its_own(tmp_path):
    base = {"task": "classification", "seed": 1,
            "data": {"source": "medmnist", "path": str(write_npz(tmp_path / "d.npz")),
                     "batch_size": 8, "test_fraction": 0.25},
            "model": {"name": "convnet", "kwargs": {"widths": [4], "convs": 1}},
            "trainer": {"max_epochs": 1, "progress_bar": False},
            "evaluation": {"bootstrap_samples": 10}}
    members = {"narrow": {}, "wide": {"model": {"name": "convnet",
                                                "kwargs": {"widths": [8], "convs": 1}}}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"study": "tiny", "base": base, "members": members}))
    out = tmp_path / "out"
    api.study(path, out)
    for member in members:
        assert (out / member / "model_card.md").is_file()
        assert (out / member / "model_card.html").is_file()
    md = (out / "model_card.md").read_text()
    assert "# Model card: study out" in md
    for member in members:
        metrics = json.loads((out / member / "metrics.json").read_text())
        auroc = metrics["splits"]["test"]["auroc"]
        assert f"auroc {auroc['value']:.3f} [{auroc['low']:.3f}, {auroc['high']:.3f}]" in md
        assert f"[{member}/model_card.md]({member}/model_card.md)" in md
    (out / "model_card.md").unlink()
    assert run_cli("card", out) == 0 and (out / "model_card.md").is_file()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_card_renders_in_headless_chromium_without_console_errors(card_run, tmp_path):
    run, _ = card_run
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         (run / "model_card.html").as_uri()],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "CLAIM 2024 checklist" in result.stdout
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line
               or "Uncaught" in line]
    assert console == []


def test_cards_of_hand_made_folders_say_what_is_missing(segmentation_run, binary_run):
    """Without splits.csv, status.json or a readable checkpoint the card still builds and
    says so; a segmentation card names the lowest Dice of its predictions as worst cases."""
    from medilab.reports.card import build_card

    md_path, html_path = build_card(segmentation_run)
    md = md_path.read_text()
    assert html_path.is_file() and "| task | segmentation |" in md
    assert "No held-out test part" in md and "no splits.csv" in md
    dice = sorted(pd.read_csv(segmentation_run / "predictions_val.csv")["dice"])[:5]
    assert "the 5 lowest Dice: " + ", ".join(f"{d:.3f}" for d in dice) in md
    (binary_run / "card.yaml").write_text("reference_standard: two readers, consensus\n")
    md = build_card(binary_run)[0].read_text()
    assert "| parameters | unknown: " in md and "not a readable checkpoint" in md
    assert "| training time | not recorded in the run folder |" in md
    assert "| reference_standard | two readers, consensus |" in md  # card.yaml beside the run
    assert "| 15 | Why this reference standard | filled |" in md


def test_card_section_is_checked_like_every_section():
    from medilab.errors import ConfigError

    with pytest.raises(ConfigError, match="card.intended_usage"):
        validate_config({"data": {"source": "sklearn_digits"}, "model": {"name": "simple_nn"},
                         "card": {"intended_usage": "typo"}})


def test_training_facts_tell_detection_warm_up(tmp_path):
    from medilab.reports.card.facts import training_facts
    from medilab.reports.card.runinfo import RunInfo

    config = {"task": "detection", "scheduler": {"name": "cosine"}, "warmup": {"steps": 100}}
    info = RunInfo(tmp_path, config, {}, {}, {}, {}, None, None)
    rows = dict(training_facts(info))
    assert rows["warm-up"] == "learning rate raised linearly over the first 100 steps"
    assert rows["schedule"] == "name=cosine"
    config["warmup"] = {"steps": 0}
    assert "warm-up" not in dict(training_facts(info))


def test_fitted_on_val_names_the_covariate_blend_tta_and_the_search(tmp_path):
    run = tmp_path / "search" / "trials" / "0003"
    run.mkdir(parents=True)
    (tmp_path / "search" / "tune.csv").write_text(
        "number,state,value\n0,COMPLETE,0.4\n1,PRUNED,\n2,COMPLETE,0.3\n3,COMPLETE,0.2\n")
    fitted = {"threshold": 0.42, "temperature": 1.0,
              "covariate_fusion": {"weight": 0.65, "coef": [[0.1]], "intercept": [0.0]}}
    metrics = {"tta": {"mode": "flips", "views": 4}}
    info = RunInfo(run, {}, metrics, {}, fitted, {}, None, None)
    text = " ".join(fitted_on_val(info))
    assert "w = 0.65 was chosen on val" in text
    assert "flips, 4 views" in text
    assert "medilab tune, 4 trials, 3 complete" in text
    assert "coef" not in text  # the regression's numbers are not dumped as text

    plain = RunInfo(tmp_path / "run", {}, {"tta": {"mode": "none", "views": 1}}, {},
                    {"threshold": 0.42}, {}, None, None)
    text = " ".join(fitted_on_val(plain))
    assert "Test-time" not in text and "tune" not in text and "covariates-only" not in text


def test_baseline_lines_put_the_covariates_only_model_beside_the_image_model(tmp_path):
    from medilab.reports.card.performance import baseline_lines

    def auroc(value: float) -> dict:
        return {"auroc": {"value": value, "low": value - 0.1, "high": value + 0.05}}

    metrics = {"covariate_fusion": {"weight_image": 0.8, "branches": {
        "test": {"image": auroc(0.7), "covariates": auroc(0.6), "fused": auroc(0.72)}}}}
    lines = baseline_lines(RunInfo(tmp_path, {}, metrics, {}, {}, {}, None, None))
    assert lines == ["Baseline comparison, AUROC on test (held out): image only 0.700 "
                     "[0.600, 0.750]; covariates only (baseline) 0.600 [0.500, 0.650]; "
                     "fused 0.720 [0.620, 0.770]."]
    assert baseline_lines(RunInfo(tmp_path, {}, {}, {}, {}, {}, None, None)) == []
