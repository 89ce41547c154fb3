import torch
import torchmetrics

from medilab.tasks.classification import classification_metrics
from medilab.tasks.metrics import with_interval


def _data(n=200, seed=0):
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 2, (n,), generator=generator)
    noise = torch.rand(n, generator=generator)
    p1 = (0.35 * target + 0.65 * noise).clamp(0, 1)
    return torch.stack([1 - p1, p1], dim=1), target


def test_interval_brackets_value_and_is_deterministic():
    probs, target = _data()
    factory = classification_metrics(2)["accuracy"]
    first = with_interval(factory, probs, target, num_bootstraps=200, seed=3)
    again = with_interval(factory, probs, target, num_bootstraps=200, seed=3)
    assert first == again
    assert first["low"] <= first["value"] <= first["high"]
    expected = float((probs.argmax(1) == target).float().mean())
    assert abs(first["value"] - expected) < 1e-6
    assert 0 < first["high"] - first["low"] < 0.2


def test_binary_metrics_use_positive_column():
    probs, target = _data()
    table = {
        name: with_interval(f, probs, target, num_bootstraps=0)
        for name, f in classification_metrics(2).items()
    }
    assert set(table) == {"accuracy", "f1_macro", "auroc", "sensitivity", "specificity"}
    auroc = torchmetrics.functional.auroc(probs[:, 1], target, task="binary")
    assert abs(table["auroc"]["value"] - float(auroc)) < 1e-6
    assert "low" not in table["auroc"]


def test_interval_narrows_with_more_samples():
    small = with_interval(classification_metrics(2)["accuracy"], *_data(50), num_bootstraps=300)
    large = with_interval(classification_metrics(2)["accuracy"], *_data(2000), num_bootstraps=300)
    assert (large["high"] - large["low"]) < (small["high"] - small["low"])
