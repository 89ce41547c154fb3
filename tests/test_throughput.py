"""benchmarks/throughput.py --quick prints and writes every column for every model."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

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
    rows = bench.main(["--quick", "--threads", "1", "--precision", "32-true", "--json", str(out)])
    printed = capsys.readouterr().out.splitlines()
    header = next(line for line in printed if line.startswith("model"))
    assert header.split() == list(bench.COLUMNS)
    written = json.loads(out.read_text())
    assert [r["model"] for r in written["rows"]] == ["resnet18_32", "unet_32"] == [
        r["model"] for r in rows]
    assert set(written["ceilings_tflops"]) == {"fp32", "bf16"}
    for row in written["rows"]:
        assert set(row) == set(bench.COLUMNS)
        assert row["precision"] == "32-true" and row["batch"] == 2
        for column in ("train_ratio", "infer_ratio", "ceiling_fraction", "peak_rss_mb",
                       "train_medilab", "infer_plain"):
            assert row[column] > 0, column
        assert row["train_ratio"] == pytest.approx(row["train_medilab"] / row["train_plain"],
                                                   rel=0.02)
        assert any(line.startswith(row["model"] + " ") for line in printed)


def test_training_flops_of_a_linear_model_are_counted_forward_and_backward():
    bench = _load()
    case = bench.Case("tiny", "classification", "simple_nn", {"hidden_sizes": []}, 1, 4, 2)
    config = bench.experiment(case, bench.parse_args(["--quick"]))
    module = bench.build_module(case, config)
    # one 16 -> 2 linear layer: forward 2*16*2 per image and the same again for the weight
    # gradient (the images need no gradient)
    assert bench.training_flops_per_image(case, module, "cpu") == 2 * (2 * 16 * 2)
