"""``trainer.precision: auto``: bf16 mixed precision with channels-last weights where the
hardware computes bf16 natively, full fp32 elsewhere (bf16 emulated on a CPU without AVX512-BF16
or AMX is several times slower than fp32).

Models with volume (5D) convolution weights stay in fp32 under ``auto``: on an AVX512-BF16 CPU
the Lab 3 3D CNN's loss was NaN from the first epoch under bf16 (issue #21), and the bf16
kernels of conv3d could not be checked on every CPU. ``MEDILAB_PRECISION`` overrides what
``auto`` picks (for example ``32-true`` to keep every machine's numbers alike).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from medilab.config import ExperimentConfig
from medilab.errors import ConfigError

AUTO = "auto"
BF16 = "bf16-mixed"
FP32 = "32-true"
PRECISION_ENV = "MEDILAB_PRECISION"
# what Lightning accepts as ``precision`` (spelled as its docs spell them)
LIGHTNING_PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true",
                        "32", "bf16", "16", "64")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class PrecisionChoice:
    """What a run computes in: Lightning ``precision``, channels-last weights, and why."""

    precision: str
    channels_last: bool
    reason: str
    seconds: dict[str, float] | None = None  # a timed probe's seconds per step, by candidate

    def record(self, configured: str | None = None) -> dict[str, object]:
        """The entry written to status.json (``configured`` first when given)."""
        body: dict[str, object] = {} if configured is None else {"configured": configured}
        body.update(precision=self.precision, channels_last=self.channels_last,
                    reason=self.reason)
        if self.seconds:
            body["probe_seconds"] = self.seconds
        return body


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


CHANNELS_LAST_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


def to_channels_last(module: torch.nn.Module) -> None:
    """Put 4D weights in channels-last and 5D weights in channels-last-3d layout, in place;
    other tensors stay as they are (``Module.to(memory_format=...)`` refuses 5D weights).
    Measured on the Lab 3 3D CNN (fp32, 2 CPU cores): channels-last-3d trains about twice
    as fast at 28³ and 64³ and infers as fast at 28³, faster at 64³."""
    for tensor in [*module.parameters(), *module.buffers()]:
        layout = CHANNELS_LAST_FORMATS.get(tensor.dim())
        if layout is not None:
            tensor.data = tensor.data.contiguous(memory_format=layout)


def has_volume_weights(model: nn.Module | None) -> bool:
    """Whether ``model`` has 5D (3D convolution) weights."""
    return model is not None and any(p.dim() == 5 for p in model.parameters())


def precision_override() -> str | None:
    """``MEDILAB_PRECISION`` when set: the precision ``auto`` takes on every machine."""
    value = os.environ.get(PRECISION_ENV, "").strip()
    if not value:
        return None
    if value not in LIGHTNING_PRECISIONS:
        raise ConfigError(f"{PRECISION_ENV}: unknown precision {value!r}; use one of "
                          f"{', '.join(LIGHTNING_PRECISIONS)}")
    return value


def choose_precision(config: ExperimentConfig, model: nn.Module | None = None) -> PrecisionChoice:
    """The precision a run of ``config`` (with network ``model``, when known) computes in.

    An explicit ``trainer.precision`` is kept as it is. ``auto`` becomes ``MEDILAB_PRECISION``
    when set; else ``32-true`` for models with 3D convolutions; else ``bf16-mixed`` with
    channels-last weights on hardware with native bf16; else ``32-true``. ``channels_last`` is
    the configured one except where bf16 turns it on.
    """
    tcfg = config.trainer
    if tcfg.precision != AUTO:
        return PrecisionChoice(tcfg.precision, tcfg.channels_last, "set in the config")
    override = precision_override()
    if override is not None:
        return PrecisionChoice(override, tcfg.channels_last, f"{PRECISION_ENV}={override}")
    if has_volume_weights(model):
        return PrecisionChoice(FP32, tcfg.channels_last,
                               "3D convolutions: kept in fp32 (bf16 diverged, issue #21)")
    if native_bf16(tcfg.accelerator):
        return PrecisionChoice(BF16, True, "native bf16 on this device")
    return PrecisionChoice(FP32, tcfg.channels_last, "no native bf16 on this device")
