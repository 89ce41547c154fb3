"""``trainer.precision: auto`` on a CPU with native bf16: which of fp32 / NCHW and bf16-mixed /
channels-last is faster for *this* model and input size, for training and for inference
separately, from a short timed probe on one real batch; the answer is cached in the run folder.

bf16 is not faster everywhere: measured on an AVX512-BF16 CPU (issue #21), ResNet-50 training
at 64² gained 1.5× from bf16 + channels-last while its inference lost 4× against fp32.
"""

from __future__ import annotations

import contextlib
import copy
import json
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import move_data_to_device

from medilab.config import ExperimentConfig
from medilab.io.atomic import write_text
from medilab.precision import (
    AUTO,
    BF16,
    CHANNELS_LAST_FORMATS,
    CPUINFO,
    FP32,
    PrecisionChoice,
    choose_precision,
    precision_override,
    to_channels_last,
    uses_cuda,
)

PHASES = ("train", "infer")
CANDIDATES = ((FP32, False), (BF16, True))  # (precision, channels-last weights)
PROBE_STEPS = 2  # timed calls per candidate (after one untimed), the fastest counts


def label(precision: str, channels_last: bool) -> str:
    return precision + ("+channels_last" if channels_last else "")


def cpu_name(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[-1].strip()
    return platform.processor() or platform.machine()


def machine_key() -> str:
    """What a cached answer is valid for: the CPU model and torch's thread count."""
    return f"{cpu_name()} / {torch.get_num_threads()} threads"


# ----------------------------------------------------------------------------- cache
def read_cache(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def cached_choice(path: Path | None, phase: str) -> PrecisionChoice | None:
    """The phase's cached choice when it was probed on this machine, else None."""
    if path is None:
        return None
    entry = read_cache(path).get(phase)
    if not isinstance(entry, dict) or entry.get("machine") != machine_key():
        return None
    try:
        return PrecisionChoice(str(entry["precision"]), bool(entry["channels_last"]),
                      f"cached probe ({entry['reason']})", entry.get("probe_seconds"))
    except KeyError:
        return None


def store_choice(path: Path, phase: str, choice: PrecisionChoice, shape: list[Any]) -> None:
    body = read_cache(path)
    body[phase] = {**choice.record(), "machine": machine_key(), "input_shape": shape}
    write_text(path, json.dumps(body, indent=2) + "\n")


# ----------------------------------------------------------------------------- timing
def seconds_per_step(step: Callable[[], None], repeats: int = PROBE_STEPS) -> float:
    """The fastest of ``repeats`` timed calls of ``step`` after one untimed call."""
    step()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


@contextlib.contextmanager
def restored(module: torch.nn.Module) -> Iterator[None]:
    """Leave the module, its metrics and the RNGs exactly as they were (weights, running
    statistics, layout, train/eval mode, gradients)."""
    state = copy.deepcopy(module.state_dict())
    formats = {name: p.is_contiguous() for name, p in module.named_parameters()}
    training = module.training
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer
        try:
            yield
        finally:
            module.zero_grad(set_to_none=True)
            module.to(memory_format=torch.contiguous_format)
            module.load_state_dict(state)
            for name, param in module.named_parameters():
                if not formats[name]:  # channels-last before the probe
                    param.data = param.data.contiguous(
                        memory_format=CHANNELS_LAST_FORMATS[param.dim()])
            module.train(training)
            _reset_metrics(module)


def _reset_metrics(module: torch.nn.Module) -> None:
    from torchmetrics import Metric

    for sub in module.modules():
        if isinstance(sub, Metric):
            sub.reset()


def step_function(module: Any, batch: Any, phase: str, precision: str) -> Callable[[], None]:
    """One training step (forward, loss, backward) or one prediction step of ``module``."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == BF16)
    if phase == "train":
        def train_step() -> None:
            with autocast:
                loss = module.training_step(batch, 0)
            loss.backward()
            module.zero_grad(set_to_none=True)

        return train_step

    def infer_step() -> None:
        with torch.inference_mode(), autocast:
            module.predict_step(batch, 0)

    return infer_step


def probe(module: Any, batch: Any, phase: str) -> PrecisionChoice:
    """Time each candidate on ``batch`` and keep the faster (fp32 on a tie)."""
    seconds: dict[str, float] = {}
    batch = move_data_to_device(batch, torch.device("cpu"))
    with restored(module):
        module.train(phase == "train")
        for precision, channels_last in CANDIDATES:
            module.to(memory_format=torch.contiguous_format)
            if channels_last:
                to_channels_last(module)
            step = step_function(module, batch, phase, precision)
            seconds[label(precision, channels_last)] = round(seconds_per_step(step), 5)
    fp32, bf16 = (seconds[label(p, c)] for p, c in CANDIDATES)
    if bf16 < fp32:
        return PrecisionChoice(BF16, True, f"probe: bf16 + channels-last {fp32 / bf16:.2f}x faster "
                                  f"than fp32 for {phase}", seconds)
    return PrecisionChoice(FP32, False, f"probe: fp32 {bf16 / max(fp32, 1e-12):.2f}x faster than "
                               f"bf16 + channels-last for {phase}", seconds)


def shape_of(batch: Any) -> list[Any]:
    """The shapes of a batch's tensors (for the cache's record)."""
    if isinstance(batch, torch.Tensor):
        return list(batch.shape)
    if isinstance(batch, dict):
        return [shape_of(v) for v in batch.values() if isinstance(v, torch.Tensor | list | tuple)]
    if isinstance(batch, list | tuple):
        found = [shape_of(v) for v in batch[:1]]
        return [len(batch), *found] if batch else []
    return []


# ----------------------------------------------------------------------------- choosing
def phase_choice(config: ExperimentConfig, phase: str, probe_file: Path | None = None,
                 module: torch.nn.Module | None = None,
                 batch: Callable[[], Any] | None = None) -> PrecisionChoice:
    """Precision and weight layout of one phase (``train`` / ``infer``), with the reason.

    :func:`medilab.precision.choose_precision` decides, except where ``auto`` would take bf16
    on a CPU: there the phase's answer comes from ``probe_file`` when it was probed on this
    machine, else from a timed probe of ``module`` on ``batch()`` (then stored in
    ``probe_file``). Without a module or batch to probe (or with ``trainer.compile``), training
    takes bf16 and inference fp32 (bf16 inference can be slower than fp32).
    """
    chosen = choose_precision(config, module)
    tcfg = config.trainer
    if (chosen.precision != BF16 or tcfg.precision != AUTO or precision_override() is not None
            or uses_cuda(tcfg.accelerator)):
        return chosen
    cached = cached_choice(probe_file, phase)
    if cached is not None:
        return cached
    can_probe = module is not None and not tcfg.compile
    example = _call(batch) if can_probe else None  # a compiled network would compile per try
    if example is None or module is None:
        if phase == "train":
            return PrecisionChoice(BF16, True, "native bf16 CPU, not probed")
        return PrecisionChoice(FP32, tcfg.channels_last, "native bf16 CPU, inference not "
                                                         "probed: fp32 (bf16 can be slower)")
    try:
        choice = probe(module, example, phase)
    except Exception as exc:  # noqa: BLE001 - a failed probe must not stop a run
        reason = f"probe failed ({type(exc).__name__}: {exc})"
        return (PrecisionChoice(BF16, True, reason) if phase == "train" else
                PrecisionChoice(FP32, tcfg.channels_last, reason))
    if probe_file is not None:
        with contextlib.suppress(OSError):
            store_choice(probe_file, phase, choice, shape_of(example))
    return choice


def _call(batch: Callable[[], Any] | None) -> Any:
    if batch is None:
        return None
    try:
        return batch()
    except Exception:  # noqa: BLE001 - no batch: no probe
        return None


def choice_record(config: ExperimentConfig, train: PrecisionChoice,
                  infer: PrecisionChoice | None = None) -> dict[str, Any]:
    """status.json's ``precision``: ``configured``, the training choice (``precision``,
    ``channels_last``, ``reason``, probe seconds) and ``inference`` (the same keys)."""
    body: dict[str, Any] = train.record(config.trainer.precision)
    if infer is not None:
        body["inference"] = infer.record()
    return body
