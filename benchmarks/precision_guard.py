"""Numerics guard for ``trainer.precision: auto``: the same experiment trained in fp32 and in
bf16-mixed + channels-last (what auto picks on CPUs/GPUs with native bf16) must reach the same
validation metric within noise.

    python benchmarks/precision_guard.py [--epochs N] [--only digits|drive] [--out DIR]

For each config it prints the held-out test metric (val when a run has none) of both precisions
with 95 % bootstrap intervals, the difference, and "within noise" when the difference is smaller
than half the fp32 interval's width. On a CPU without native bf16 the bf16 run is emulated
(slow) but its numbers still count.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from medilab import api
from medilab.precision import native_bf16
from medilab.runfolder import headline_metrics

REPO = Path(__file__).resolve().parents[1]
RUNS = {  # name → (config, data key, data path under $MEDILAB_DATA, metric)
    "digits": ("lab1_digits.yaml", "data.train_csv", "digits/train.csv", "accuracy"),
    "drive": ("lab4_unet.yaml", "data.root", "drive/training", "dice"),
}
PRECISIONS = {
    "32-true": ["trainer.precision=32-true"],
    "bf16-mixed": ["trainer.precision=bf16-mixed", "trainer.channels_last=true"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs")
    parser.add_argument("--only", choices=sorted(RUNS), default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_precision"))
    args = parser.parse_args()
    data = Path(os.environ.get("MEDILAB_DATA", REPO.parent / "shared" / "data"))
    print(f"native bf16 on this machine: {native_bf16('cpu')}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name, (config, key, relative, metric) in RUNS.items():
        if args.only and name != args.only:
            continue
        if not (data / relative).exists():
            print(f"{name}: {data / relative} not found, skipped (set MEDILAB_DATA)")
            continue
        results = {}
        for precision, overrides in PRECISIONS.items():
            extra = [f"{key}={data / relative}", "trainer.progress_bar=false", *overrides]
            if args.epochs:
                extra.append(f"trainer.max_epochs={args.epochs}")
            start = time.perf_counter()
            run_dir = api.train(REPO / "configs" / config, extra,
                                run_dir=args.out / f"{name}-{precision}-{stamp}")
            split, scores = headline_metrics(api.evaluate(run_dir))  # test when held out
            entry = scores[metric]
            results[precision] = (entry, time.perf_counter() - start)
        (fp32, fp32_s), (bf16, bf16_s) = results["32-true"], results["bf16-mixed"]
        difference = bf16["value"] - fp32["value"]
        noise = (fp32["high"] - fp32["low"]) / 2
        print(f"{name} {split} {metric}: fp32 {fp32['value']:.4f} [{fp32['low']:.4f}, "
              f"{fp32['high']:.4f}] ({fp32_s:.0f} s), bf16 {bf16['value']:.4f} "
              f"[{bf16['low']:.4f}, {bf16['high']:.4f}] ({bf16_s:.0f} s): difference "
              f"{difference:+.4f}, {'within' if abs(difference) <= noise else 'OUTSIDE'} noise "
              f"(±{noise:.4f})")


if __name__ == "__main__":
    main()
