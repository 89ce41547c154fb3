"""``trainer.precision: auto``: bf16 mixed precision with channels-last weights where the
hardware computes bf16 natively, full fp32 elsewhere (bf16 emulated on a CPU without AVX512-BF16
or AMX is several times slower than fp32)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from medilab import precision_probe as probe_cache
from medilab.config import ExperimentConfig
from medilab.precision_probe import Choice

AUTO = "auto"
BF16 = "bf16-mixed"
FP32 = "32-true"
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")


def cpu_has_native_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """True when the CPU advertises AMX-BF16 or AVX512-BF16 (Linux ``/proc/cpuinfo`` flags);
    False where the flags cannot be read."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return any(flag in flags for flag in CPU_BF16_FLAGS)
    return False


def cuda_has_bf16() -> bool:
    """True when a CUDA GPU is present and supports bf16 (Ampere and later)."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def uses_cuda(accelerator: str) -> bool:
    """Whether Lightning will put the run on a CUDA GPU for this ``trainer.accelerator``."""
    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def native_bf16(accelerator: str) -> bool:
    """Whether the device this accelerator selects computes bf16 natively."""
    if uses_cuda(accelerator):
        return cuda_has_bf16()
    if accelerator in ("cpu", "auto"):
        return cpu_has_native_bf16()
    return False  # mps, tpu, ...: keep fp32


def resolve_precision(config: ExperimentConfig) -> tuple[str, bool]:
    """(Lightning ``precision``, channels-last weights) for the run. ``auto`` becomes
    ``bf16-mixed`` with channels-last on hardware with native bf16, else ``32-true`` with the
    configured ``channels_last``; an explicit precision is kept as it is."""
    tcfg = config.trainer
    if tcfg.precision != AUTO:
        return tcfg.precision, tcfg.channels_last
    if native_bf16(tcfg.accelerator):
        return BF16, True
    return FP32, tcfg.channels_last


def precision_record(config: ExperimentConfig) -> dict[str, object]:
    """What the run chose, for status.json: ``{configured, precision, channels_last}``."""
    precision, channels_last = resolve_precision(config)
    return {"configured": config.trainer.precision, "precision": precision,
            "channels_last": channels_last}


def phase_choice(config: ExperimentConfig, phase: str, probe_file: Path | None = None,
                 module: torch.nn.Module | None = None,
                 batch: Callable[[], Any] | None = None,
                 to_channels_last: Callable[[torch.nn.Module], None] | None = None) -> Choice:
    """Precision and weight layout of one phase (``train`` / ``infer``), with the reason.

    An explicit precision is kept. ``auto`` is fp32 where bf16 is not native (no probe: emulated
    bf16 is always slower) and bf16 + channels-last on a CUDA GPU with bf16. On a CPU with
    native bf16 the phase's answer comes from ``probe_file`` when it was probed on this machine,
    else from a timed probe of ``module`` on ``batch()`` (stored in ``probe_file``); without a
    module or batch, training takes bf16 and inference fp32 (bf16 inference can be slower).
    """
    tcfg = config.trainer
    if tcfg.precision != AUTO:
        return Choice(tcfg.precision, tcfg.channels_last, "configured")
    if not native_bf16(tcfg.accelerator):
        return Choice(FP32, tcfg.channels_last,
                      "no native bf16 on this device: emulated bf16 is slower than fp32")
    if uses_cuda(tcfg.accelerator):
        return Choice(BF16, True, "CUDA GPU with bf16")
    cached = probe_cache.cached_choice(probe_file, phase)
    if cached is not None:
        return cached
    example = _probe_batch(batch) if module is not None and to_channels_last else None
    if example is None or module is None or to_channels_last is None:
        if phase == "train":
            return Choice(BF16, True, "native bf16 CPU, not probed")
        return Choice(FP32, tcfg.channels_last, "native bf16 CPU, inference not probed: fp32 "
                                                "(bf16 inference can be slower)")
    try:
        choice = probe_cache.probe(module, example, phase, to_channels_last)
    except Exception as exc:  # noqa: BLE001 - a failed probe must not stop a run
        reason = f"probe failed ({type(exc).__name__}: {exc})"
        return (Choice(BF16, True, reason) if phase == "train" else
                Choice(FP32, tcfg.channels_last, reason))
    if probe_file is not None:
        with contextlib.suppress(OSError):
            probe_cache.store_choice(probe_file, phase, choice, probe_cache.shape_of(example))
    return choice


def _probe_batch(batch: Callable[[], Any] | None) -> Any:
    if batch is None:
        return None
    try:
        return batch()
    except Exception:  # noqa: BLE001 - no batch: no probe
        return None


def choice_record(config: ExperimentConfig, train: Choice, infer: Choice | None = None
                  ) -> dict[str, Any]:
    """status.json's ``precision``: ``configured``, the training choice (``precision``,
    ``channels_last``, ``reason``, probe seconds) and ``inference`` (the same keys)."""
    body: dict[str, Any] = {"configured": config.trainer.precision, **train.record()}
    if infer is not None:
        body["inference"] = infer.record()
    return body
