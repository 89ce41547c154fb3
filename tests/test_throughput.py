"""benchmarks/throughput.py --quick prints and writes every column for every model."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _load():
    spec = importlib.util.spec_from_file_location("throughput_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_quick_run_prints_and_writes_every_column(tmp_path, capsys):
    bench = _load()
    out = tmp_path / "throughput.json"
    rows = bench.main(["--quick", "--threads", "1", "--clock", "thread", "--precision",
                       "32-true", "--steps", "1", "--warmup", "0", "--json", str(out)])
    printed = capsys.readouterr().out.splitlines()
    header = next(line for line in printed if line.startswith("model"))
    assert header.split() == list(bench.COLUMNS)
    written = json.loads(out.read_text())
    assert [r["model"] for r in written["rows"]] == ["resnet18_32", "unet_32", "cnn3d_16",
                                                     "frcnn_64"] == [r["model"] for r in rows]
    assert set(written["ceilings_tflops"]) == {"fp32"}  # only the dtype used is measured
    for row in written["rows"]:
        assert set(row) == {*bench.COLUMNS, "why"}
        assert row["batch"] == 2
        for phase in ("train", "infer"):
            assert row[f"{phase}_precision"] == "32-true"
            for column in ("medilab", "same", "fp32", "ratio", "gain", "share", "tflops"):
                assert row[f"{phase}_{column}"] > 0, (row["model"], phase, column)
            assert row[f"{phase}_ratio"] == pytest.approx(
                row[f"{phase}_medilab"] / row[f"{phase}_fp32"], rel=0.02)
            assert row[f"{phase}_overhead"] == pytest.approx(
                1 - row[f"{phase}_medilab"] / row[f"{phase}_same"], abs=0.01)
            assert row[f"{phase}_share"] == pytest.approx(
                row[f"{phase}_tflops"] / row[f"{phase}_ceiling"], rel=0.02, abs=2e-5)
            assert row[f"{phase}_ceiling"] == pytest.approx(written["ceilings_tflops"]["fp32"],
                                                            abs=1e-3)
        assert row["why"] == {"train": "set in the config", "infer": "set in the config"}
        assert row["peak_rss_mb"] > 0
        assert any(line.startswith(row["model"] + " ") for line in printed)


def test_same_precision_loop_and_ceiling_follow_what_each_phase_computes():
    bench = _load()
    bf16 = bench.Choice("bf16-mixed", True, "probe")
    cls = bench.Case("r", "classification", "resnet18", {}, 3, 32, 2)
    det = bench.Case("d", "detection", "fasterrcnn_mobilenet_v3_large_fpn", {}, 1, 64, 2)
    assert bench.computed_in(cls, bf16, "infer") == bench.Setting("bf16-mixed", True)
    # the detector predicts boxes in fp32 whatever the precision: its ceiling is fp32's
    assert bench.computed_in(det, bf16, "infer") == bench.Setting("32-true", True)
    assert bench.computed_in(det, bf16, "train").dtype is torch.bfloat16
    assert bench.ceiling_dtype(bench.Setting("bf16-mixed", True), "cpu") == "bf16"
    assert bench.ceiling_dtype(bench.Setting("16-mixed", False), "cuda") == "fp16"
    assert bench.ceiling_dtype(bench.Setting("32-true", False), "cpu") == "fp32"
    volume = bench.Case("v", "classification", "cnn3d", {}, 1, 16, 2, dims=3)
    assert bench.memory_format(volume, True) is torch.channels_last_3d
    assert bench.SyntheticBatches(volume, 2).images.shape == (2, 1, 16, 16, 16)


def test_rates_leave_out_the_warmup():
    bench = _load()
    args = bench.parse_args(["--steps", "2", "--warmup", "1"])
    # warm-up 9 s dropped; 2 batches of 2 images in 1 s
    assert bench.best_rate([9.0, 0.25, 0.75], 2, args) == pytest.approx(4.0)
    assert bench._faster((1.0, 5.0), (2.0, 3.0)) == (2.0, 5.0)
    with pytest.raises(SystemExit):  # thread CPU time measures one thread only
        bench.parse_args(["--clock", "thread", "--threads", "2"])


def test_flops_of_a_linear_model_are_counted_forward_and_backward():
    bench = _load()
    case = bench.Case("tiny", "classification", "simple_nn", {"hidden_sizes": []}, 1, 4, 2)
    config = bench.experiment(case, bench.parse_args(["--quick"]))
    module = bench.build_module(case, config)
    # one 16 -> 2 linear layer: forward 2*16*2 per image and the same again for the weight
    # gradient (the images need no gradient); inference only the forward
    assert bench.flops_per_image(case, module, "cpu") == {"train": 2 * (2 * 16 * 2),
                                                          "infer": 2 * 16 * 2}
