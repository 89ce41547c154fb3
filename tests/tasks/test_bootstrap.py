import numpy as np
import pytest

from medilab.tasks.bootstrap import bootstrap, resample_indices


def _mean(values):
    return lambda idx: float(values[idx].mean())


def test_interval_brackets_value_deterministic_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(size=50), rng.normal(size=2000)
    first = bootstrap(_mean(small), 50, num_bootstraps=300, seed=3)
    assert first == bootstrap(_mean(small), 50, num_bootstraps=300, seed=3)
    assert first["low"] <= first["value"] <= first["high"]
    wide = first["high"] - first["low"]
    big = bootstrap(_mean(large), 2000, num_bootstraps=300, seed=3)
    assert big["high"] - big["low"] < wide / 3
    assert bootstrap(_mean(small), 50, num_bootstraps=0) == {"value": pytest.approx(small.mean())}


def test_group_resampling_keeps_patients_whole():
    groups = np.repeat(np.arange(10), 5)
    drawn = resample_indices(len(groups), groups, np.random.default_rng(1))
    assert len(drawn) == 50
    counts = np.bincount(groups[drawn], minlength=10)
    assert set(counts) <= {0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50}


def test_patient_bootstrap_is_wider_on_clustered_data():
    """Images of one patient share the outcome: resampling patients widens the interval."""
    rng = np.random.default_rng(2)
    patient_effect = rng.normal(size=40)
    groups = np.repeat(np.arange(40), 10)
    values = patient_effect[groups] + 0.1 * rng.normal(size=400)
    by_image = bootstrap(_mean(values), 400, num_bootstraps=400, seed=0)
    by_patient = bootstrap(_mean(values), 400, groups=groups, num_bootstraps=400, seed=0)
    assert by_patient["value"] == by_image["value"]
    assert (by_patient["high"] - by_patient["low"]) > 2 * (by_image["high"] - by_image["low"])


def test_undefined_draws_are_skipped():
    labels = np.array([0] * 9 + [1])

    def positive_share(idx):
        return float("nan") if labels[idx].sum() == 0 else float(labels[idx].mean())

    result = bootstrap(positive_share, 10, num_bootstraps=200, seed=0)
    assert np.isfinite(result["low"]) and np.isfinite(result["high"])
    # P(the one positive is missed) = 0.9^10 ≈ 35 %: about 70 of 200 draws, counted
    assert 45 <= result["skipped"] <= 95
    assert result["low"] > 0
