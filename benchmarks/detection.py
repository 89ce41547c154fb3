"""Lab 5 benchmark: Faster R-CNN on the shared TBX11K part (class-agnostic TB boxes).

Prints AP50, mAP, AP40, recall, FROC mean and image-level AUROC (95% intervals) on the held-out
images. Targets (on TB images never trained or selected on): AP50 ≥ 0.35, image AUROC ≥ 0.90.

    python benchmarks/detection.py [--config configs/lab5_tbx11k.yaml] [--time-budget HH:MM]
        [-o KEY=VALUE ...] [--out runs/bench_detection]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from medilab import api
from medilab.runfolder import headline_metrics

REPO = Path(__file__).resolve().parents[1]
SHOWN = ("ap50", "map", "ap40", "recall50@100", "froc_mean", "image_auroc")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "lab5_tbx11k.yaml")
    parser.add_argument("--time-budget", default=None, help="training wall clock, HH:MM")
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    data = Path(os.environ.get("MEDILAB_DATA", REPO.parent / "shared" / "data"))
    if not (data / "tbx11k").is_dir():
        raise SystemExit(f"{data / 'tbx11k'} not found: set MEDILAB_DATA")
    overrides = [f"data.root={data / 'tbx11k'}", "trainer.progress_bar=false", *args.override]
    if args.time_budget:
        hours, minutes = args.time_budget.split(":")
        overrides.append(f"trainer.max_time=00:{int(hours):02d}:{int(minutes):02d}:00")
    out = args.out or Path("runs/bench_detection") / time.strftime("%Y%m%d-%H%M%S")
    start = time.perf_counter()
    api.train(args.config, overrides, run_dir=out)
    seconds = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    split, val = headline_metrics(metrics)  # the held-out test part when there is one
    print(f"\n{args.config.name}: {metrics.get('training', {}).get('epochs_run')} epochs, "
          f"{seconds:.0f} s (train + evaluate), n = {metrics['n'][split]} {split} images "
          f"({'held out' if split != 'val' else 'val: the selection set, not held out'})")
    for name in SHOWN:
        entry = val.get(name)
        if entry:
            interval = f"[{entry['low']:.3f}, {entry['high']:.3f}]" if "low" in entry else ""
            print(f"  {name:<14} {entry['value']:.4f} {interval}")
    ap50, auroc = val["ap50"]["value"], val["image_auroc"]["value"]
    print(f"targets: AP50 ≥ 0.35 {'met' if ap50 >= 0.35 else 'NOT met'}, image AUROC ≥ 0.90 "
          f"{'met' if auroc >= 0.90 else 'NOT met'}  ({out})")


if __name__ == "__main__":
    main()
