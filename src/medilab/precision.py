"""``trainer.precision: auto``: bf16 mixed precision with channels-last weights where the
hardware computes bf16 natively, full fp32 elsewhere (bf16 emulated on a CPU without AVX512-BF16
or AMX is several times slower than fp32)."""

from __future__ import annotations

from pathlib import Path

import torch

from medilab.config import ExperimentConfig

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
