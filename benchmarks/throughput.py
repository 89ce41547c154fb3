"""Throughput of medilab's own training and inference path against plain PyTorch.

For each model, in one process and on the same model and synthetic batch, training and
inference images/s of three loops:

- ``medilab``: the module built by the task family, run by a Trainer from
  ``medilab.run.build_trainer`` / ``build_inference_trainer`` (``trainer.precision`` as
  configured, default ``auto``);
- ``same``: a plain eager PyTorch loop at the precision and memory format medilab used
  (autocast and channels-last weights and inputs where medilab has them);
- ``fp32``: a plain fp32 NCHW eager loop.

``same / fp32`` is the precision (and layout) gain, ``1 - medilab / same`` medilab's overhead,
``medilab / fp32`` the whole ratio. The share of the compute ceiling is given for training
(forward + backward FLOPs) and inference (forward FLOPs), both counted with
``torch.utils.flop_counter.FlopCounterMode``, over the measured ``torch.matmul`` rate in the
dtype that phase computes in (fp32, TF32 where CUDA allows it, bf16, fp16), or ``--peak-tflops``.
Every loop is timed ``--repeats`` times, the three interleaved, and the fastest of each kept
(the machine may be shared).

    .venv/bin/python benchmarks/throughput.py [--quick] [--only resnet50_224 ...]
        [--device cpu|cuda] [--precision auto] [--channels-last] [--batch N] [--steps N]
        [--repeats N] [--threads N] [--clock wall|thread] [--peak-tflops T] [--json FILE]

Models: ``resnet50_224``, ``resnet50_64`` (ResNet-50, 3 channels), ``unet_96`` (the Lab 4 DRIVE
U-Net, 96² patches), ``cnn3d_28``, ``cnn3d_64`` (the Lab 3 3D CNN on 28³ / 64³ volumes),
``frcnn_256``, ``frcnn_512`` (the Lab 5 Faster R-CNN MobileNetV3-FPN, grey 256² / 512²).
``--quick``: tiny versions of each kind (ResNet-18 32², U-Net 32², 3D CNN 16³, Faster R-CNN
64²), batch 2, 2 timed steps (a smoke test of every column).
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from medilab.config import ExperimentConfig, validate_config
from medilab.data.datamodules.detection import detection_collate
from medilab.precision import PrecisionChoice as Choice
from medilab.run import ChannelsLast, build_inference_trainer, build_trainer, precision_choice
from medilab.tasks.base import BaseModule
from medilab.tasks.classification import ClassificationFamily
from medilab.tasks.detection import DetectionFamily
from medilab.tasks.segmentation import SegmentationFamily

warnings.filterwarnings("ignore", message=r".*no `val_dataloader`.*")  # training steps only

PHASES = ("train", "infer")
COLUMNS = ("model", "batch",
           *(f"{phase}_{column}" for phase in PHASES for column in (
               "precision", "medilab", "same", "fp32", "gain", "overhead", "ratio", "tflops",
               "ceiling", "share")),
           "peak_rss_mb")
FAMILIES = {"classification": ClassificationFamily, "segmentation": SegmentationFamily,
            "detection": DetectionFamily}


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
    dims: int = 2

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.channels, *(self.size,) * self.dims)


@dataclass(frozen=True)
class Setting:
    """What a loop computes in: Lightning precision and channels-last weights / inputs."""

    precision: str
    channels_last: bool

    @property
    def label(self) -> str:
        return self.precision + ("+cl" if self.channels_last else "")

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for full precision."""
        if self.precision.startswith("bf16"):
            return torch.bfloat16
        if self.precision.startswith("16"):
            return torch.float16
        return None


FP32 = Setting("32-true", False)
CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}
now = CLOCKS["wall"]  # --clock thread: CPU seconds of this thread (one torch thread only)
CNN3D = {"width": 16, "depth": 4, "convs_per_stage": 2, "dropout": 0.2}  # Lab 3's member
FRCNN = {"weights": "none", "box_loss": "giou"}  # Lab 5 (TBX11K) settings


def cases(args: argparse.Namespace) -> list[Case]:
    if args.quick:
        found = [Case("resnet18_32", "classification", "resnet18", {}, 3, 32, 2),
                 Case("unet_32", "segmentation", "unet", {"depth": 2, "base_width": 4}, 1, 32,
                      2),
                 Case("cnn3d_16", "classification", "cnn3d", {"width": 4, "depth": 2}, 1, 16,
                      2, dims=3),
                 Case("frcnn_64", "detection", "fasterrcnn_mobilenet_v3_large_fpn", FRCNN, 1,
                      64, 2)]
    else:
        unet = {"depth": args.unet_depth, "base_width": args.unet_width, "norm": "batch"}
        detector = "fasterrcnn_mobilenet_v3_large_fpn"
        found = [Case("resnet50_224", "classification", "resnet50", {}, 3, 224, 16),
                 Case("resnet50_64", "classification", "resnet50", {}, 3, 64, 64),
                 Case("unet_96", "segmentation", "unet", unet, 1, 96, 16),
                 Case("cnn3d_28", "classification", "cnn3d", CNN3D, 1, 28, 32, dims=3),
                 Case("cnn3d_64", "classification", "cnn3d", CNN3D, 1, 64, 8, dims=3),
                 Case("frcnn_256", "detection", detector, FRCNN, 1, 256, 4),
                 Case("frcnn_512", "detection", detector, FRCNN, 1, 512, 4)]
    if args.only:
        unknown = set(args.only) - {c.name for c in found}
        if unknown:
            sys.exit(f"--only: unknown model(s) {', '.join(sorted(unknown))}")
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
    sections: dict[str, Any] = {}
    if case.task == "classification":
        data: dict[str, Any] = {"source": "sklearn_digits", "batch_size": case.batch}
    elif case.task == "segmentation":
        size = [case.size] * case.dims
        data = {"source": "segmentation_folder", "root": "unused", "patch_size": size,
                "batch_size": case.batch}
        sections["inference"] = {"roi_size": size, "sw_batch_size": case.batch}
    else:
        data = {"source": "box_table", "root": "unused", "size": case.size,
                "channels": case.channels, "batch_size": case.batch}
        trainer.update(monitor="val/ap50", monitor_mode="max")
    return validate_config({"task": case.task, "data": data, "trainer": trainer,
                            "model": {"name": case.model, "kwargs": case.kwargs},
                            "loss": {"name": "cross_entropy"}, **sections})


def build_module(case: Case, config: ExperimentConfig) -> BaseModule:
    """The module exactly as ``medilab train`` builds it (task family, model registry)."""
    args: dict[str, Any] = {"in_channels": case.channels, "num_classes": 2, **case.kwargs}
    if case.task == "classification":
        args.update(image_size=[case.size] * case.dims, class_names=["0", "1"])
    elif case.task == "detection":
        args.update(num_classes=1, min_size=case.size, max_size=case.size, classes=["lesion"])
    return FAMILIES[case.task]().build_module(config, args, for_training=True)


class SyntheticBatches(torch.utils.data.Dataset):
    """``length`` samples cycling through one generated batch (data loading costs ~nothing)."""

    def __init__(self, case: Case, length: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand((case.batch, *case.shape), generator=generator)
        self.task, self.length = case.task, length
        spatial = case.shape[1:]
        if case.task == "classification":
            self.labels = torch.randint(0, 2, (case.batch,), generator=generator)
        elif case.task == "segmentation":
            self.labels = torch.randint(0, 2, (case.batch, *spatial), generator=generator)
        else:  # one box per image, 10-60 % of the side
            corner = torch.rand((case.batch, 2), generator=generator) * 0.4 * case.size
            side = (0.1 + torch.rand((case.batch, 2), generator=generator) * 0.5) * case.size
            self.labels = torch.cat([corner, corner + side], dim=1)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        k = index % len(self.images)
        if self.task == "classification":
            return {"image": self.images[k], "label": self.labels[k]}
        if self.task == "segmentation":
            return {"image": self.images[k], "mask": self.labels[k],
                    "valid": torch.ones(self.labels[k].shape)}
        return self.images[k], {"boxes": self.labels[k][None],
                                "labels": torch.ones(1, dtype=torch.int64)}

    def loader(self, batch: int) -> torch.utils.data.DataLoader:
        collate = detection_collate if self.task == "detection" else None
        return torch.utils.data.DataLoader(self, batch_size=batch, collate_fn=collate)

    def batch(self, device: torch.device, memory_format: torch.memory_format) -> tuple[Any, Any]:
        """(inputs, targets) of the whole generated batch for a plain loop."""
        images = self.images.to(device).contiguous(memory_format=memory_format)
        if self.task != "detection":
            return images, self.labels.to(device)
        targets = [{"boxes": b[None].to(device), "labels": torch.ones(1, dtype=torch.int64,
                                                                      device=device)}
                   for b in self.labels]
        return list(images), targets


def memory_format(case: Case, channels_last: bool) -> torch.memory_format:
    if not channels_last:
        return torch.contiguous_format
    return torch.channels_last_3d if case.dims == 3 else torch.channels_last


# ----------------------------------------------------------------------------- timing
class StepClock(L.Callback):
    """The start time of every batch and the end of the last one (training or prediction)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.starts: list[float] = []
        self.end = 0.0

    def _start(self) -> None:
        synchronize(self.device)
        self.starts.append(now())

    def _end(self) -> None:
        synchronize(self.device)
        self.end = now()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._end()

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0
                               ) -> None:
        self._start()

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                             dataloader_idx=0) -> None:
        self._end()

    def durations(self) -> list[float]:
        """Seconds per batch, start to next start (the loop's own work between batches
        included), the last to its end."""
        return [b - a for a, b in zip(self.starts, [*self.starts[1:], self.end], strict=True)]


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def best_rate(durations: list[float], batch: int, args: argparse.Namespace) -> float:
    """Images/s over the ``steps`` batches after ``warmup`` untimed ones."""
    return batch * args.steps / max(sum(durations[args.warmup:]), 1e-9)


def loop_durations(step: Callable[[], None], args: argparse.Namespace) -> list[float]:
    durations = []
    for _ in range(args.warmup + args.steps):
        start = now()
        step()
        synchronize(args.device)
        durations.append(now() - start)
    return durations


# ----------------------------------------------------------------------------- measuring
def medilab_rates(case: Case, config: ExperimentConfig, module: BaseModule,
                  choices: dict[str, Choice], args: argparse.Namespace, folder: Path
                  ) -> tuple[float, float]:
    """(training, inference) images/s through medilab's Trainers."""
    initial = copy.deepcopy(module.state_dict())  # each loop starts from the same weights
    total = args.warmup + args.steps
    loader = SyntheticBatches(case, case.batch * total).loader(case.batch)
    clock = StepClock(args.device)
    trainer = build_trainer(config, folder, module, choices["train"],
                            limit_train_batches=total, limit_val_batches=0, logger=False)
    # keep what shapes the steps (channels-last); drop checkpoints and the rate monitor
    trainer.callbacks = [c for c in trainer.callbacks if isinstance(c, ChannelsLast)] + [clock]
    module.train()
    trainer.fit(module, train_dataloaders=loader)
    train_rate = best_rate(clock.durations(), case.batch, args)
    clock = StepClock(args.device)
    inference = build_inference_trainer(config, module, choices["infer"])
    inference.callbacks.append(clock)
    module.load_state_dict(initial)
    module.eval()
    inference.predict(module, dataloaders=loader, return_predictions=False)
    return train_rate, best_rate(clock.durations(), case.batch, args)


def training_loss(case: Case, model: torch.nn.Module, inputs: Any, targets: Any
                  ) -> torch.Tensor:
    """The plain loss of one batch (a detector's own summed losses)."""
    if case.task == "detection":
        return sum(model(inputs, targets).values())
    return F.cross_entropy(model(inputs).float(), targets)


def inference(case: Case, model: torch.nn.Module, inputs: Any) -> None:
    """One plain prediction: probabilities (or boxes) copied to the CPU."""
    if case.task == "detection":
        for output in model(inputs):
            output["boxes"].float().cpu()
        return
    torch.softmax(model(inputs).float(), dim=1).cpu()


def plain_rates(case: Case, module: BaseModule, setting: dict[str, Setting],
                args: argparse.Namespace) -> tuple[float, float]:
    """(training, inference) images/s of an eager loop on the same model and batch, each phase
    at its ``setting`` (autocast dtype, channels-last weights and inputs)."""
    model = module.model.to(device=args.device, dtype=torch.float32)
    initial = copy.deepcopy(model.state_dict())  # each loop starts from the same weights
    rates = []
    for phase in PHASES:
        model.load_state_dict(initial)
        rates.append(plain_rate(case, model, phase, setting[phase], args))
    model.load_state_dict(initial)
    model.to(memory_format=torch.contiguous_format)
    return rates[0], rates[1]


def plain_rate(case: Case, model: torch.nn.Module, phase: str, setting: Setting,
               args: argparse.Namespace) -> float:
    """Images/s of one phase of the plain loop."""
    device = torch.device(args.device)
    fmt = memory_format(case, setting.channels_last)
    model.to(memory_format=fmt)
    inputs, targets = SyntheticBatches(case, case.batch).batch(device, fmt)
    autocast = torch.autocast(device.type, dtype=setting.dtype or torch.bfloat16,
                              enabled=setting.dtype is not None)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = training_loss(case, model, inputs, targets)
        loss.backward()
        optimizer.step()

    def infer_step() -> None:
        with torch.inference_mode(), autocast:
            inference(case, model, inputs)

    model.train(phase == "train")
    step = train_step if phase == "train" else infer_step
    return best_rate(loop_durations(step, args), case.batch, args)


def flops_per_image(case: Case, module: BaseModule, device: str) -> dict[str, float]:
    """Forward + backward FLOPs of one training step and forward FLOPs of one prediction,
    divided by the batch size."""
    model = module.model.to(device=device, dtype=torch.float32,
                            memory_format=torch.contiguous_format)
    inputs, targets = SyntheticBatches(case, case.batch).batch(torch.device(device),
                                                               torch.contiguous_format)
    counts = {}
    model.train()
    with FlopCounterMode(display=False) as counter:
        training_loss(case, model, inputs, targets).backward()
    counts["train"] = counter.get_total_flops() / case.batch
    model.zero_grad(set_to_none=True)
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        inference(case, model, inputs)
    counts["infer"] = counter.get_total_flops() / case.batch
    return counts


def matmul_tflops(dtype: torch.dtype, device: str, size: int, repeats: int) -> float:
    """Measured dense matmul TFLOP/s (``size``² × ``size``²) in ``dtype``."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):  # the fastest product counts (the machine may be shared)
        synchronize(device)
        start = now()
        torch.matmul(a, b)
        synchronize(device)
        best = min(best, now() - start)
    return 2 * size**3 / max(best, 1e-9) / 1e12


def ceiling_dtype(setting: Setting, device: str) -> str:
    """The dtype a phase's matmuls run in: bf16, fp16, TF32 (CUDA fp32 with TF32 allowed)."""
    if setting.dtype is torch.bfloat16:
        return "bf16"
    if setting.dtype is torch.float16:
        return "fp16"
    if device == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "fp32"


class Ceilings:
    """Matmul ceilings measured on first need, per dtype (or one given peak for all)."""

    DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32,
              "fp32": torch.float32}

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.measured: dict[str, float] = {}

    def __call__(self, name: str) -> float:
        if name not in self.measured:
            self.measure(name)
        return self.measured[name]

    def measure(self, name: str) -> None:
        """Measure ``name`` (again), keeping the fastest measurement so far."""
        args = self.args
        if args.peak_tflops:
            self.measured[name] = args.peak_tflops
            return
        size, repeats = (256, 3) if args.quick else (2048 if args.device == "cpu" else 8192, 10)
        rate = matmul_tflops(self.DTYPES[name], args.device, size, repeats)
        self.measured[name] = max(rate, self.measured.get(name, 0.0))
        print(f"matmul ceiling {name}: {rate:.3f} TFLOP/s, best {self.measured[name]:.3f} "
              f"({args.device}, {torch.get_num_threads()} threads)")

    def settle(self, rows: list[dict[str, Any]]) -> None:
        """Measure every ceiling once more and give each row the best (a busy moment during
        one measurement would inflate every share)."""
        for name in list(self.measured):
            self.measure(name)
        for row in rows:
            for phase in PHASES:
                ceiling = self.measured[row.pop(f"_{phase}_ceiling_dtype")]
                row[f"{phase}_ceiling"] = round(ceiling, 3)
                row[f"{phase}_share"] = round(row[f"{phase}_tflops"] / ceiling, 5)


@dataclass
class Measured:
    """One phase of one row: medilab's setting and the three rates."""

    setting: Setting
    medilab: float
    same: float
    fp32: float
    flops: float
    extra: dict[str, Any] = field(default_factory=dict)


def medilab_choices(case: Case, config: ExperimentConfig, module: BaseModule, folder: Path
                    ) -> dict[str, Choice]:
    """What ``medilab train`` / ``evaluate`` would choose per phase (``auto``: probed on a CPU
    with native bf16), on the synthetic batch."""
    loader = SyntheticBatches(case, case.batch).loader(case.batch)
    return {phase: precision_choice(config, phase, folder, module, loader) for phase in PHASES}


def computed_in(case: Case, choice: Choice, phase: str) -> Setting:
    """What a phase really computes in: detection boxes are predicted in fp32 whatever the
    precision (``DetectionModule.forward``), with the chosen weight layout."""
    if case.task == "detection" and phase == "infer":
        return Setting(FP32.precision, choice.channels_last)
    return Setting(choice.precision, choice.channels_last)


def measure(case: Case, args: argparse.Namespace, ceilings: Ceilings) -> dict[str, Any]:
    L.seed_everything(0, verbose=False)
    config = experiment(case, args)
    module = build_module(case, config)
    initial = copy.deepcopy(module.state_dict())
    flops = flops_per_image(case, module, args.device)
    medilab, same, fp32 = (0.0, 0.0), (0.0, 0.0), (0.0, 0.0)
    with tempfile.TemporaryDirectory(prefix="medilab_throughput_") as folder:
        choices = medilab_choices(case, config, module, Path(folder))
        setting = {phase: computed_in(case, choices[phase], phase) for phase in PHASES}
        for _ in range(args.repeats):  # interleaved: a busy moment slows every loop alike
            module.load_state_dict(initial)
            medilab = _faster(medilab, medilab_rates(case, config, module, choices, args,
                                                     Path(folder)))
            module.load_state_dict(initial)
            same = _faster(same, plain_rates(case, module, setting, args))
            fp32 = _faster(fp32, plain_rates(case, module, {"train": FP32, "infer": FP32},
                                             args))
    row: dict[str, Any] = {"model": case.name, "batch": case.batch}
    for k, phase in enumerate(PHASES):
        achieved = flops[phase] * medilab[k] / 1e12
        dtype = ceiling_dtype(setting[phase], args.device)
        ceiling = ceilings(dtype)
        row[f"_{phase}_ceiling_dtype"] = dtype
        row.update({
            f"{phase}_precision": setting[phase].label,
            f"{phase}_medilab": round(medilab[k], 2), f"{phase}_same": round(same[k], 2),
            f"{phase}_fp32": round(fp32[k], 2),
            f"{phase}_gain": round(same[k] / fp32[k], 3),
            f"{phase}_overhead": round(1 - medilab[k] / same[k], 3),
            f"{phase}_ratio": round(medilab[k] / fp32[k], 3),
            f"{phase}_tflops": round(achieved, 6), f"{phase}_ceiling": round(ceiling, 3),
            f"{phase}_share": round(achieved / ceiling, 5),
        })
    row["peak_rss_mb"] = round(peak_rss_mb(), 1)
    row["why"] = {phase: choices[phase].reason for phase in PHASES}
    return row


def _faster(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return max(a[0], b[0]), max(a[1], b[1])


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, 2 steps")
    parser.add_argument("--only", nargs="+", help="model names to run")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", default="auto", help="trainer.precision for medilab")
    parser.add_argument("--channels-last", action="store_true",
                        help="trainer.channels_last (auto turns it on with bf16 anyway)")
    parser.add_argument("--batch", type=int, help="batch size (default per model)")
    parser.add_argument("--steps", type=int, help="timed steps per block (default 10, quick 2)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds of the three loops; each loop's fastest counts (default 1)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 2, quick 1)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="thread: CPU time of this thread instead of wall time, steadier on "
                             "a shared machine (CPU only, with --threads 1)")
    parser.add_argument("--unet-depth", type=int, default=3)
    parser.add_argument("--unet-width", type=int, default=16)
    parser.add_argument("--peak-tflops", type=float,
                        help="use this dense peak (TFLOP/s, any precision) as the ceiling "
                             "instead of the measured matmul rate")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if args.clock == "thread" and (args.threads != 1 or args.device != "cpu"):
        parser.error("--clock thread needs --threads 1 and --device cpu")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    global now
    now = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA GPU visible")
    ceilings = Ceilings(args)
    rows = []
    print("  ".join(COLUMNS))
    for case in cases(args):
        row = measure(case, args, ceilings)
        rows.append(row)
        print("  ".join(str(row[c]) for c in COLUMNS), flush=True)
        print(f"  chosen: train {row['why']['train']}; inference {row['why']['infer']}")
    ceilings.settle(rows)
    print("with the best ceilings:")
    print("  ".join(COLUMNS))
    for row in rows:
        print("  ".join(str(row[c]) for c in COLUMNS))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"ceilings_tflops": ceilings.measured, "rows": rows},
                                        indent=2) + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
