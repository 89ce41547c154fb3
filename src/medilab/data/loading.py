"""DataLoader options chosen from the machine: worker processes, pinned memory, persistent
workers (``data.num_workers: auto``, the default; an explicit number is kept as it is)."""

from __future__ import annotations

import os
from typing import Any, Literal

AUTO = "auto"
MAX_AUTO_WORKERS = 4


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a Slurm or container
    allocation), not every core of the machine."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def auto_workers(cores: int | None = None) -> int:
    """Loader worker processes for ``cores`` cores: one core stays with the training process,
    at most ``MAX_AUTO_WORKERS``; none on one or two cores, where a worker only competes with
    the training process's own threads."""
    cores = available_cores() if cores is None else cores
    return min(MAX_AUTO_WORKERS, cores - 1) if cores > 2 else 0


def loader_options(
    num_workers: int | Literal["auto"], *, device_is_cuda: bool
) -> dict[str, Any]:
    """``num_workers``, ``pin_memory`` and ``persistent_workers`` for a ``DataLoader``:
    ``"auto"`` workers from :func:`auto_workers`, pinned host memory only when batches go to a
    CUDA GPU, workers kept alive between epochs whenever there are any."""
    workers = auto_workers() if num_workers == AUTO else int(num_workers)
    return {"num_workers": workers, "pin_memory": device_is_cuda,
            "persistent_workers": workers > 0}


def pins_memory(config: Any) -> bool:
    """Whether an experiment's batches go to a CUDA GPU (``trainer.accelerator``), so the
    loaders should pin host memory."""
    from medilab.precision import uses_cuda

    return uses_cuda(config.trainer.accelerator)
