"""Throughput of medilab's own training and inference path against plain PyTorch.

For each model, in one process and on the same model and synthetic batch: training and
inference images/s through medilab (module built by the task family, a Trainer from
``medilab.run.build_trainer`` / ``build_inference_trainer``, ``trainer.precision`` resolved as
configured, default ``auto``) and through a plain fp32 NCHW eager PyTorch loop; their ratios;
the fraction of the compute ceiling medilab's training reaches (model FLOPs counted with
``torch.utils.flop_counter.FlopCounterMode``, forward + backward, over the measured
``torch.matmul`` GFLOP/s in the precision used, or ``--peak-tflops``); and peak RSS.

    .venv/bin/python benchmarks/throughput.py [--quick] [--only resnet50_224 ...]
        [--device cpu|cuda] [--precision auto] [--channels-last] [--batch N] [--steps N]
        [--threads N] [--unet-depth D] [--unet-width W] [--peak-tflops T] [--json FILE]

Models: ``resnet50_224`` and ``resnet50_64`` (ResNet-50 classification, 3 channels),
``unet_96`` (the Lab 4 DRIVE U-Net, green channel, 96² patches). ``--quick``: ResNet-18 at 32²
and a tiny U-Net at 32², batch 2, 2 timed steps (a smoke test of every column).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from medilab.config import ExperimentConfig, validate_config
from medilab.precision import resolve_precision
from medilab.run import ChannelsLast, build_inference_trainer, build_trainer
from medilab.tasks.base import BaseModule
from medilab.tasks.classification import ClassificationFamily
from medilab.tasks.segmentation import SegmentationFamily

warnings.filterwarnings("ignore", message=r".*no `val_dataloader`.*")  # training steps only

COLUMNS = ("model", "precision", "batch", "train_medilab", "train_plain", "train_ratio",
           "infer_medilab", "infer_plain", "infer_ratio", "train_tflops", "ceiling_tflops",
           "ceiling_fraction", "peak_rss_mb")


@dataclass
class Case:
    """One benchmarked model: task, model name and kwargs, input shape, batch size."""

    name: str
    task: str
    model: str
    kwargs: dict[str, Any]
    channels: int
    size: int
    batch: int


def cases(args: argparse.Namespace) -> list[Case]:
    if args.quick:
        found = [Case("resnet18_32", "classification", "resnet18", {}, 3, 32, 2),
                 Case("unet_32", "segmentation", "unet", {"depth": 2, "base_width": 4}, 1, 32,
                      2)]
    else:
        unet = {"depth": args.unet_depth, "base_width": args.unet_width, "norm": "batch"}
        found = [Case("resnet50_224", "classification", "resnet50", {}, 3, 224, 16),
                 Case("resnet50_64", "classification", "resnet50", {}, 3, 64, 64),
                 Case("unet_96", "segmentation", "unet", unet, 1, 96, 16)]
    if args.only:
        found = [c for c in found if c.name in args.only]
    for case in found:
        case.batch = args.batch or case.batch
    return found


# ----------------------------------------------------------------------------- building
def experiment(case: Case, args: argparse.Namespace) -> ExperimentConfig:
    """A validated config for ``case``; its data is never read (batches are synthetic)."""
    trainer = {"accelerator": "gpu" if args.device == "cuda" else "cpu",
               "precision": args.precision, "channels_last": args.channels_last,
               "max_epochs": 1, "progress_bar": False,
               "early_stopping": {"enabled": False}, "deterministic": False}
    if case.task == "classification":
        data: dict[str, Any] = {"source": "sklearn_digits", "batch_size": case.batch}
    else:
        size = [case.size, case.size]
        data = {"source": "segmentation_folder", "root": "unused", "patch_size": size,
                "roi_size": size, "batch_size": case.batch, "sw_batch_size": case.batch}
    return validate_config({"task": case.task, "data": data, "trainer": trainer,
                            "model": {"name": case.model, "kwargs": case.kwargs},
                            "loss": {"name": "cross_entropy"}})


def build_module(case: Case, config: ExperimentConfig) -> BaseModule:
    """The module exactly as ``medilab train`` builds it (task family, model registry)."""
    if case.task == "classification":
        args = {"in_channels": case.channels, "num_classes": 2,
                "image_size": [case.size, case.size], "class_names": ["0", "1"], **case.kwargs}
        return ClassificationFamily().build_module(config, args, for_training=True)
    args = {"in_channels": case.channels, "num_classes": 2, **case.kwargs}
    return SegmentationFamily().build_module(config, args, for_training=True)


class SyntheticBatches(torch.utils.data.Dataset):
    """``length`` samples cycling through one generated batch (data loading costs ~nothing)."""

    def __init__(self, case: Case, length: int) -> None:
        generator = torch.Generator().manual_seed(0)
        shape = (case.batch, case.channels, case.size, case.size)
        self.images = torch.randn(shape, generator=generator)
        self.task, self.length = case.task, length
        if case.task == "classification":
            self.labels = torch.randint(0, 2, (case.batch,), generator=generator)
        else:
            self.labels = torch.randint(0, 2, (case.batch, case.size, case.size),
                                        generator=generator)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        k = index % len(self.images)
        if self.task == "classification":
            return {"image": self.images[k], "label": self.labels[k]}
        return {"image": self.images[k], "mask": self.labels[k],
                "valid": torch.ones(self.labels[k].shape)}


class StepClock(L.Callback):
    """Seconds from the start of batch ``warmup`` to the end of the last batch."""

    def __init__(self, warmup: int, device: str) -> None:
        self.warmup, self.device = warmup, device
        self.start: float | None = None
        self.end = 0.0
        self.batches = 0

    def _tick(self, batch_idx: int, starting: bool) -> None:
        if batch_idx < self.warmup:
            return
        synchronize(self.device)
        if starting and self.start is None:
            self.start = time.perf_counter()
        if not starting:
            self.end, self.batches = time.perf_counter(), self.batches + 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._tick(batch_idx, True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._tick(batch_idx, False)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0
                               ) -> None:
        self._tick(batch_idx, True)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                             dataloader_idx=0) -> None:
        self._tick(batch_idx, False)

    def seconds(self) -> float:
        return self.end - (self.start or self.end)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- measuring
def medilab_rates(case: Case, config: ExperimentConfig, module: BaseModule,
                  args: argparse.Namespace, folder: Path) -> tuple[float, float]:
    """(training, inference) images/s through medilab's Trainers."""
    total = args.warmup + args.steps
    loader = torch.utils.data.DataLoader(SyntheticBatches(case, case.batch * total),
                                         batch_size=case.batch)
    clock = StepClock(args.warmup, args.device)
    trainer = build_trainer(config, folder, limit_train_batches=total, limit_val_batches=0,
                            logger=False)
    # keep what shapes the steps (channels-last); drop checkpoints and the rate monitor
    trainer.callbacks = [c for c in trainer.callbacks if isinstance(c, ChannelsLast)] + [clock]
    trainer.fit(module, train_dataloaders=loader)
    train_rate = case.batch * clock.batches / max(clock.seconds(), 1e-9)
    clock = StepClock(args.warmup, args.device)
    inference = build_inference_trainer(config)
    inference.callbacks.append(clock)
    module.eval()
    inference.predict(module, dataloaders=loader, return_predictions=False)
    return train_rate, case.batch * clock.batches / max(clock.seconds(), 1e-9)


def plain_rates(case: Case, module: BaseModule, args: argparse.Namespace
                ) -> tuple[float, float]:
    """(training, inference) images/s of an fp32 NCHW eager loop on the same model and batch."""
    device = torch.device(args.device)
    model = module.model.to(device=device, dtype=torch.float32,
                            memory_format=torch.contiguous_format)
    data = SyntheticBatches(case, case.batch)
    images = data.images.to(device).contiguous()
    labels = data.labels.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    def infer_step() -> None:
        with torch.inference_mode():
            torch.softmax(model(images), dim=1).cpu()

    model.train()
    train_rate = _rate(train_step, case.batch, args)
    model.eval()
    return train_rate, _rate(infer_step, case.batch, args)


def _rate(step: Any, batch: int, args: argparse.Namespace) -> float:
    for _ in range(args.warmup):
        step()
    synchronize(args.device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize(args.device)
    return batch * args.steps / max(time.perf_counter() - start, 1e-9)


def training_flops_per_image(case: Case, module: BaseModule, device: str) -> float:
    """Forward + backward FLOPs of one training step divided by the batch size."""
    model = module.model.to(device=device, dtype=torch.float32,
                            memory_format=torch.contiguous_format).train()
    data = SyntheticBatches(case, case.batch)
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(data.images.to(device)), data.labels.to(device)).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / case.batch


def matmul_tflops(dtype: torch.dtype, device: str, size: int, repeats: int) -> float:
    """Measured dense matmul TFLOP/s (``size``² × ``size``²) in ``dtype``."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.matmul(a, b)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    synchronize(device)
    return 2 * size**3 * repeats / max(time.perf_counter() - start, 1e-9) / 1e12


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(case: Case, args: argparse.Namespace, ceilings: dict[str, float]) -> dict[str, Any]:
    L.seed_everything(0, verbose=False)
    config = experiment(case, args)
    precision, _ = resolve_precision(config)
    module = build_module(case, config)
    flops = training_flops_per_image(case, module, args.device)
    with tempfile.TemporaryDirectory(prefix="medilab_throughput_") as folder:
        train_medilab, infer_medilab = medilab_rates(case, config, module, args, Path(folder))
    train_plain, infer_plain = plain_rates(case, module, args)
    ceiling = ceilings["bf16" if precision.startswith("bf16") else "fp32"]
    achieved = flops * train_medilab / 1e12
    return {
        "model": case.name, "precision": precision, "batch": case.batch,
        "train_medilab": round(train_medilab, 2), "train_plain": round(train_plain, 2),
        "train_ratio": round(train_medilab / train_plain, 3),
        "infer_medilab": round(infer_medilab, 2), "infer_plain": round(infer_plain, 2),
        "infer_ratio": round(infer_medilab / infer_plain, 3),
        "train_tflops": round(achieved, 4), "ceiling_tflops": round(ceiling, 3),
        "ceiling_fraction": round(achieved / ceiling, 4), "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, 2 steps")
    parser.add_argument("--only", nargs="+", help="model names to run")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", default="auto", help="trainer.precision for medilab")
    parser.add_argument("--channels-last", action="store_true",
                        help="trainer.channels_last (auto turns it on with bf16 anyway)")
    parser.add_argument("--batch", type=int, help="batch size (default per model)")
    parser.add_argument("--steps", type=int, help="timed steps (default 10, quick 2)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 2, quick 1)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--unet-depth", type=int, default=3)
    parser.add_argument("--unet-width", type=int, default=16)
    parser.add_argument("--peak-tflops", type=float,
                        help="use this dense peak (TFLOP/s, any precision) as the ceiling "
                             "instead of the measured matmul rate")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA GPU visible")
    size, repeats = (256, 3) if args.quick else (2048 if args.device == "cpu" else 8192, 10)
    if args.peak_tflops:
        ceilings = {"fp32": args.peak_tflops, "bf16": args.peak_tflops}
    else:
        ceilings = {"fp32": matmul_tflops(torch.float32, args.device, size, repeats),
                    "bf16": matmul_tflops(torch.bfloat16, args.device, size, repeats)}
    print(f"matmul ceiling TFLOP/s: fp32 {ceilings['fp32']:.3f}, bf16 {ceilings['bf16']:.3f}"
          f" ({args.device}, {torch.get_num_threads()} threads)")
    rows = []
    print("  ".join(COLUMNS))
    for case in cases(args):
        row = measure(case, args, ceilings)
        rows.append(row)
        print("  ".join(str(row[c]) for c in COLUMNS), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"ceilings_tflops": ceilings, "rows": rows}, indent=2)
                             + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
