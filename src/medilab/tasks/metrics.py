"""Point estimates with percentile bootstrap intervals (torchmetrics' BootStrapper)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.wrappers import BootStrapper

MetricFactory = Callable[[], Metric]


def with_interval(
    factory: MetricFactory,
    preds: torch.Tensor,
    target: torch.Tensor,
    num_bootstraps: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """``{"value", "low", "high"}``: the metric on all samples and its bootstrap interval.

    Resampling draws samples with replacement (multinomial), ``num_bootstraps`` times. With
    ``num_bootstraps=0`` the interval is omitted.
    """
    point = factory()
    point.update(preds, target)
    result = {"value": float(point.compute())}
    if num_bootstraps > 0 and len(target) > 1:
        alpha = (1 - confidence) / 2
        booted = BootStrapper(
            factory(),
            num_bootstraps=num_bootstraps,
            mean=False,
            std=False,
            quantile=torch.tensor([alpha, 1 - alpha]),
            sampling_strategy="multinomial",
        )
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            booted.update(preds, target)
            low, high = booted.compute()["quantile"].tolist()
        finally:
            torch.random.set_rng_state(state)
        result.update(low=float(low), high=float(high))
    return result


def metric_table(
    factories: dict[str, MetricFactory],
    preds: torch.Tensor,
    target: torch.Tensor,
    **options: Any,
) -> dict[str, dict[str, float]]:
    """``with_interval`` for each named metric."""
    return {name: with_interval(f, preds, target, **options) for name, f in factories.items()}
