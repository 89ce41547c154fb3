"""Lab 4 benchmark: U-Net and FCN-8s on DRIVE (5 of 20 images select, 5 more held out) and ISBI.

Prints held-out test Dice (val only for a run without a test part), IoU, pixel AUC, pixel error
(95% bootstrap intervals over images), epochs run, seconds per epoch and total time per run.
Targets: U-Net Dice ≥ 0.80 inside the field of view on DRIVE within an hour of training on 2 CPU
cores; ISBI pixel error ≤ 0.07 on held-out pairs.

    .venv/bin/python benchmarks/segmentation.py [--only unet_drive ...] [--epochs N]
        [--time-budget SECONDS] [--threads 2] [--precision auto] [--members N | --folds K]
        [--out runs/bench_segmentation]

``--time-budget`` stops each training run (each fold with ``--folds``) after that many seconds
(Lightning ``max_time``); the best checkpoint so far is then evaluated. ``--members N`` trains N
runs on the same held-out images and adds a row for their ensemble (``medilab ensemble``); its
times are the members' sums.
``--folds K`` cross-validates instead (``medilab crossval``, nested: an inner val part of each
fold's training images selects, the outer fold is scored untouched): every image is held out
once, and the row shows the mean over all images (no interval) with the folds' summed times.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import torch
from torchvision.models import VGG16_Weights

from medilab import api
from medilab.config import load_config
from medilab.models.weights import hub_file
from medilab.runfolder import headline_metrics

REPO = Path(__file__).resolve().parents[1]
ISBI = ["data.layout=isbi", "inference.roi_size=[256,256]"]
RUNS = {  # name → (config, data folder under MEDILAB_DATA, extra overrides, target)
    "unet_drive": ("lab4_unet.yaml", "drive/training", [], ("dice", ">=", 0.80)),
    "fcn8s_drive": ("lab4_fcn8s.yaml", "drive/training", [], ("dice", ">=", 0.77)),
    "unet_isbi": ("lab4_unet_isbi.yaml", "isbi2012", [], ("pixel_error", "<=", 0.07)),
    "fcn8s_isbi": ("lab4_fcn8s.yaml", "isbi2012", ISBI, ("pixel_error", "<=", 0.07)),
}


def time_budget(seconds: float | None) -> list[str]:
    """The ``trainer.max_time`` override for a wall-clock budget per training run, if any."""
    if not seconds:
        return []
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    return [f"trainer.max_time={days:02d}:{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"]


def epochs_run(run_dir: Path) -> int:
    """How many epochs a run's curves hold."""
    return int(pd.read_csv(run_dir / "metrics.csv")["epoch"].dropna().nunique())


def train_with_budget(
    config_path: Path, overrides: list[str], run_dir: Path, seconds: float | None
) -> tuple[Path, int, float]:
    """Train (no evaluation) with an optional wall-clock budget; (run folder, epochs, seconds)."""
    start = time.perf_counter()
    api.train(config_path, [*overrides, *time_budget(seconds)], run_dir=run_dir,
              evaluate_after=False)
    return run_dir, epochs_run(run_dir), time.perf_counter() - start


def cross_validated(
    config_path: Path, overrides: list[str], folds: int, out: Path, name: str, target: tuple,
    seconds: float | None,
) -> tuple:
    """One table row for a K-fold cross-validation (each fold with the time budget): mean over
    all held-out images, total time."""
    start = time.perf_counter()
    summary = api.crossval(config_path, folds, out, [*overrides, *time_budget(seconds)])
    total = time.perf_counter() - start
    metrics = {key: {"value": value["weighted_mean"]} for key, value in summary["metrics"].items()}
    epochs = sum(epochs_run(out / f"fold{k}") for k in range(folds))
    # the folds' training and evaluation together: s/epoch includes each fold's evaluation
    return (f"{name} cv{folds}", metrics, epochs, total, total, target, out)


def cpu_has_amx() -> bool:
    """True on CPUs with AMX tiles, where bf16 convolutions run ~2× faster than fp32."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private in torch 2.x
    return bool(probe and probe())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), default=None)
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds of training per run (default: no limit)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--precision", choices=["auto", "32-true", "bf16-mixed"], default="auto",
                        help="auto: bf16-mixed with channels-last weights on CPUs with AMX "
                             "(native bf16 matrix units), else 32-true")
    parser.add_argument("--members", type=int, default=1,
                        help="train N runs per benchmark (seeds seed..seed+N-1, one split) and "
                             "also evaluate their mean-probability ensemble")
    parser.add_argument("--folds", type=int, default=None,
                        help="K-fold cross-validation over all images instead of one split")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_segmentation"))
    parser.add_argument("-o", "--override", action="append", default=[],
                        help="extra config override for every run, e.g. data.patches_per_image=8")
    args = parser.parse_args()
    if args.folds and args.members > 1:
        parser.error("--members and --folds do not combine")
    torch.set_num_threads(args.threads)

    data = Path(os.environ.get("MEDILAB_DATA", REPO.parent / "shared" / "data"))
    use_bf16 = args.precision == "bf16-mixed" or (args.precision == "auto" and cpu_has_amx())
    precision = ["trainer.precision=bf16-mixed", "trainer.channels_last=true"] if use_bf16 else []
    print(f"precision: {' '.join(precision) or '32-true'}")
    have_vgg = hub_file(VGG16_Weights.IMAGENET1K_V1).is_file()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for name, (config, folder, extra, target) in RUNS.items():
        if args.only and name not in args.only:
            continue
        root = data / folder
        if not root.is_dir():
            print(f"{name}: {root} not found, skipped (set MEDILAB_DATA)")
            continue
        overrides = [f"data.root={root}", "trainer.progress_bar=false", *precision, *extra,
                     *args.override]
        if name.startswith("fcn8s") and not have_vgg:
            # plain VGG16 barely moves from random init in minutes; VGG16-BN does
            print(f"{name}: no VGG16 ImageNet weights in the torch hub cache: random init, "
                  "batch_norm=true, lr 1e-3")
            overrides += ["model.kwargs.pretrained=false", "model.kwargs.batch_norm=true",
                          "optimizer.lr=0.001"]
        if args.epochs:
            overrides.append(f"trainer.max_epochs={args.epochs}")
        config_path = REPO / "configs" / config
        if args.folds:
            rows.append(cross_validated(config_path, overrides, args.folds,
                                        args.out / f"{name}-cv{args.folds}-{stamp}", name, target,
                                        args.time_budget))
            continue
        base_seed = load_config(config_path, overrides).seed
        members, member_rows = [], []
        for member in range(args.members):
            label = name if args.members == 1 else f"{name}_m{member + 1}"
            extra_seed = []
            if member:  # same held-out images, other initialisation and patch draws
                extra_seed = [f"seed={base_seed + member}",
                              f"data.splits_csv={members[0] / 'splits.csv'}"]
            start = time.perf_counter()
            run_dir, epochs, fit_seconds = train_with_budget(
                config_path, [*overrides, *extra_seed], args.out / f"{label}-{stamp}",
                args.time_budget,
            )
            _, metrics = headline_metrics(api.evaluate(run_dir))  # test when held out
            member_rows.append((label, metrics, epochs, fit_seconds,
                                time.perf_counter() - start, target, run_dir))
            members.append(run_dir)
        rows += member_rows
        if len(members) > 1:
            start = time.perf_counter()
            ensemble_dir = args.out / f"{name}-ensemble-{stamp}"
            _, metrics = headline_metrics(api.ensemble(members, ensemble_dir))
            rows.append((f"{name} ens", metrics, sum(r[2] for r in member_rows),
                         sum(r[3] for r in member_rows),
                         sum(r[4] for r in member_rows) + time.perf_counter() - start, target,
                         ensemble_dir))

    print(f"\n{'run':<12} {'Dice [95% CI]':<24} {'IoU':>6} {'AUC':>6} {'pix.err':>7} "
          f"{'epochs':>6} {'s/epoch':>7} {'total':>7}  target")
    for name, m, epochs, fit_seconds, total, (metric, op, goal), run_dir in rows:
        value = m[metric]["value"]
        met = value >= goal if op == ">=" else value <= goal
        dice = m["dice"]
        auc = m.get("auc", {}).get("value", float("nan"))
        interval = (f"[{dice['low']:.3f}, {dice['high']:.3f}]" if "low" in dice
                    else "(mean of all folds)")
        print(
            f"{name:<12} {dice['value']:.4f} {interval:<19} {m['iou']['value']:6.4f} {auc:6.4f} "
            f"{m['pixel_error']['value']:7.4f} {epochs:6d} {fit_seconds / max(epochs, 1):7.1f} "
            f"{total:6.0f}s  {metric} {op} {goal}: {'met' if met else 'NOT met'}  ({run_dir})"
        )


if __name__ == "__main__":
    main()
