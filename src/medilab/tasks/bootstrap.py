"""One percentile bootstrap for every task: resample samples, or whole patients (clusters).

Images of one patient are not independent; with ``groups`` the bootstrap draws patients with
replacement and keeps all of a drawn patient's samples, so intervals widen as they should.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Score = Callable[[np.ndarray], float]


def resample_indices(
    n: int, groups: Sequence[object] | np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    """Sample positions of one bootstrap draw (by sample, or by whole group when given)."""
    if groups is None:
        return rng.integers(0, n, size=n)
    codes, first = _group_codes(groups)
    members = np.split(np.argsort(codes, kind="stable"), np.cumsum(np.bincount(codes))[:-1])
    drawn = rng.integers(0, len(first), size=len(first))
    return np.concatenate([members[g] for g in drawn])


def _group_codes(groups: Sequence[object] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray([str(g) for g in groups])
    uniques, first, codes = np.unique(values, return_index=True, return_inverse=True)
    return codes, first


def bootstrap(
    score: Score,
    n: int,
    *,
    groups: Sequence[object] | np.ndarray | None = None,
    num_bootstraps: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """``{"value", "low", "high"}``: ``score`` on all ``n`` samples and its percentile interval.

    ``score`` takes an index array (positions into the samples, possibly repeated) and returns a
    float; a draw where it is undefined (NaN: e.g. sensitivity of a draw without positives, AUROC
    of a draw missing a class) is skipped, never scored, and ``skipped`` counts those draws. With
    ``num_bootstraps=0`` or fewer than two samples (groups) the interval is omitted.
    """
    value = float(score(np.arange(n)))
    result = {"value": value}
    units = n if groups is None else len(set(map(str, groups)))
    if num_bootstraps <= 0 or units < 2:
        return result
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(num_bootstraps):
        with np.errstate(all="ignore"):
            drawn = float(score(resample_indices(n, groups, rng)))
        if np.isfinite(drawn):
            draws.append(drawn)
    result["skipped"] = num_bootstraps - len(draws)
    if draws:
        alpha = (1 - confidence) / 2
        low, high = np.quantile(draws, [alpha, 1 - alpha])
        result.update(low=float(low), high=float(high))
    return result
