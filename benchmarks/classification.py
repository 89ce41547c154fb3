"""Lab 2 benchmark: the classification configs on the shared data, one table.

- BreastMNIST: ``--seeds`` runs of configs/lab2_breastmnist.yaml and their mean-probability
  ensemble (targets on the official test part: AUROC ≥ 0.92, accuracy ≥ 0.88).

Every figure is the run's held-out ``test`` part (the configs hold one out); ``val`` only when
a run has none, and then marked so.
- NIH1000 (patient-grouped split): image only, age/sex only and fused (configs/lab2_nih1000.yaml
  and variants): fused AUROC ≥ 0.68 and above image only.
- ``--extractors``: the seed's VGG16 / ResNet50 / Swin configs on NIH1000.

    python benchmarks/classification.py [--only breastmnist|nih1000|extractors] [--seeds 3]
        [-o KEY=VALUE ...] [--out runs/bench_classification]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from medilab import api
from medilab.runfolder import headline_metrics

REPO = Path(__file__).resolve().parents[1]


def _row(name: str, metrics: dict, seconds: float, run_dir: Path, target: str = "") -> str:
    split, scores = headline_metrics(metrics)  # the held-out test part when there is one
    auroc, acc = scores["auroc"], scores["accuracy"]
    interval = (f"[{auroc['low']:.3f}, {auroc['high']:.3f}]" if "low" in auroc else "")
    return (f"{name:<26} {split:<5} {auroc['value']:.4f} {interval:<16} {acc['value']:.4f}  "
            f"{seconds:7.0f}s  {target}  ({run_dir})")


def train(config: Path, overrides: list[str], run_dir: Path) -> tuple[dict, float]:
    start = time.perf_counter()
    api.train(config, [*overrides, "trainer.progress_bar=false"], run_dir=run_dir)
    seconds = time.perf_counter() - start
    import json

    return json.loads((run_dir / "metrics.json").read_text()), seconds


def breastmnist(data: Path, out: Path, seeds: int, extra: list[str]) -> list[str]:
    config = REPO / "configs" / "lab2_breastmnist.yaml"
    path = data / "medmnist" / "breastmnist.npz"
    rows, members = [], []
    for seed in range(seeds):
        run_dir = out / f"breastmnist-seed{seed}"
        metrics, seconds = train(config, [f"data.path={path}", f"seed={seed}", *extra], run_dir)
        rows.append(_row(f"breastmnist seed {seed}", metrics, seconds, run_dir))
        members.append(run_dir)
    if len(members) > 1:
        ensemble_dir = out / "breastmnist-ensemble"
        metrics = api.ensemble(members, ensemble_dir)
        split, scores = headline_metrics(metrics)
        met = scores["auroc"]["value"] >= 0.92 and scores["accuracy"]["value"] >= 0.88
        rows.append(_row(f"breastmnist ensemble ×{seeds}", metrics, 0, ensemble_dir,
                         f"AUROC ≥ 0.92, acc ≥ 0.88: {'met' if met else 'NOT met'} ({split})"))
    return rows


NIH_VARIANTS = {  # name → overrides of configs/lab2_nih1000.yaml
    "nih image only": ["data.covariates=[]"],
    "nih age/sex only": ["model.name=covariates_only", "model.kwargs={}"],
    "nih age/sex inside the CNN": ["model.kwargs.covariate_scale=3.0"],
    "nih fused": [],  # the config: image-only CNN, age/sex blended in by a val-chosen weight
}


def nih(data: Path, out: Path, extra: list[str]) -> list[str]:
    config = REPO / "configs" / "lab2_nih1000.yaml"
    rows = []
    for name, overrides in NIH_VARIANTS.items():
        run_dir = out / name.replace(" ", "-").replace("/", "")
        metrics, seconds = train(config, [f"data.root={data / 'nih1000'}", *overrides, *extra],
                                 run_dir)
        rows.append(_row(name, metrics, seconds, run_dir,
                         "fused AUROC ≥ 0.68" if name == "nih fused" else ""))
    return rows


def extractors(data: Path, out: Path, extra: list[str]) -> list[str]:
    rows = []
    for name in ("vgg16", "resnet50", "swin"):
        run_dir = out / f"nih-{name}"
        metrics, seconds = train(REPO / "configs" / f"lab2_{name}.yaml",
                                 [f"data.root={data / 'nih1000'}", *extra], run_dir)
        rows.append(_row(f"nih {name} + age/sex", metrics, seconds, run_dir))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["breastmnist", "nih1000", "extractors"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    data = Path(os.environ.get("MEDILAB_DATA", REPO.parent / "shared" / "data"))
    if not data.is_dir():
        raise SystemExit(f"{data} not found: set MEDILAB_DATA")
    out = args.out or Path("runs/bench_classification") / time.strftime("%Y%m%d-%H%M%S")
    rows = []
    if args.only in (None, "breastmnist"):
        rows += breastmnist(data, out, args.seeds, args.override)
    if args.only in (None, "nih1000"):
        rows += nih(data, out, args.override)
    if args.only == "extractors":
        rows += extractors(data, out, args.override)
    print(f"\n{'run':<26} {'split':<5} {'AUROC [95% CI]':<23} {'acc':<6}  {'time':>7}"
          "   (test: held out; val: the selection set, not held out)")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
