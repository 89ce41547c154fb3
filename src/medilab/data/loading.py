"""DataLoader options chosen from the machine: worker processes, pinned memory, persistent
workers (``data.num_workers: auto``, the default; an explicit number is kept as it is).

Training loaders start their workers afresh each epoch: a worker's random state (augmentation)
then derives from the epoch's seed (:class:`medilab.run.EpochSeeds`), so a resumed run repeats
an uninterrupted one; persistent workers would carry it over from the epochs before.
"""

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


def resolve_workers(num_workers: int | Literal["auto"]) -> int:
    """``data.num_workers`` as a number: ``"auto"`` from :func:`auto_workers`."""
    return auto_workers() if num_workers == AUTO else int(num_workers)


def loader_options(
    num_workers: int | Literal["auto"], *, device_is_cuda: bool, train: bool = False
) -> dict[str, Any]:
    """``num_workers``, ``pin_memory`` and ``persistent_workers`` for a ``DataLoader``:
    ``"auto"`` workers from :func:`auto_workers`, pinned host memory only when batches go to a
    CUDA GPU, workers kept alive between epochs whenever there are any, except for a ``train``
    loader (see the module docstring)."""
    workers = resolve_workers(num_workers)
    return {"num_workers": workers, "pin_memory": device_is_cuda,
            "persistent_workers": workers > 0 and not train}


def pins_memory(config: Any) -> bool:
    """Whether an experiment's batches go to a CUDA GPU (``trainer.accelerator``), so the
    loaders should pin host memory."""
    from medilab.precision import uses_cuda

    return uses_cuda(config.trainer.accelerator)
