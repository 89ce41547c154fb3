"""Lab 1 benchmark: both digits configs on $MEDILAB_DATA/digits/train.csv (5,000 real MNIST digits).

Prints held-out test accuracy, macro-F1 (with 95% intervals) and wall time per config (the
configs hold out 20 % as test; val only selects). Targets: SimpleNN ≥ 0.965, CNN ≥ 0.985
accuracy on the held-out digits.

    python benchmarks/digits.py [--epochs N] [--out runs/bench_digits]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from medilab import api
from medilab.runfolder import headline_metrics

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "simple_nn": (REPO / "configs" / "lab1_digits.yaml", 0.965),
    "small_cnn": (REPO / "configs" / "lab1_digits_cnn.yaml", 0.985),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_digits"))
    parser.add_argument("--only", choices=sorted(CONFIGS), default=None)
    args = parser.parse_args()

    data = Path(os.environ.get("MEDILAB_DATA", REPO.parent / "shared" / "data"))
    train_csv = data / "digits" / "train.csv"
    if not train_csv.is_file():
        raise SystemExit(f"{train_csv} not found: set MEDILAB_DATA")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for name, (config, target) in CONFIGS.items():
        if args.only and name != args.only:
            continue
        overrides = [f"data.train_csv={train_csv}", "trainer.progress_bar=false"]
        if args.epochs:
            overrides.append(f"trainer.max_epochs={args.epochs}")
        start = time.perf_counter()
        run_dir = api.train(config, overrides, run_dir=args.out / f"{name}-{stamp}")
        seconds = time.perf_counter() - start
        split, metrics = headline_metrics(api.evaluate(run_dir))
        rows.append((name, metrics, seconds, target, run_dir))

    print(f"\n{'model':<10} {split + ' accuracy [95% CI]':<28} {'macro-F1':<8} {'time':>8}  "
          "target")
    for name, metrics, seconds, target, run_dir in rows:
        acc, f1 = metrics["accuracy"], metrics["f1_macro"]
        verdict = "met" if acc["value"] >= target else "NOT met"
        print(
            f"{name:<10} {acc['value']:.4f} [{acc['low']:.4f}, {acc['high']:.4f}]   "
            f"{f1['value']:.4f}   {seconds:7.1f}s  ≥{target} {verdict}  ({run_dir})"
        )


if __name__ == "__main__":
    main()
