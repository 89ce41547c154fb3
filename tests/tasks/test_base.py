import pytest
import torch

from medilab.config import OptimizerConfig, SchedulerConfig
from medilab.tasks.base import build_optimizer, build_scheduler


def _params():
    return [torch.nn.Parameter(torch.zeros(3))]


def test_sgd_momentum_nesterov():
    optimizer = build_optimizer(
        _params(), OptimizerConfig(name="sgd", lr=0.05, momentum=0.8, nesterov=True)
    )
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"]) == (0.05, 0.8, True)


@pytest.mark.parametrize(
    ("name", "cls"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)]
)
def test_adam_family(name, cls):
    optimizer = build_optimizer(_params(), OptimizerConfig(name=name, lr=0.01, weight_decay=0.1))
    assert type(optimizer) is cls
    assert optimizer.param_groups[0]["weight_decay"] == 0.1


def test_schedulers():
    optimizer = build_optimizer(_params(), OptimizerConfig(lr=1.0))
    assert build_scheduler(optimizer, SchedulerConfig(name="none"), 10, "val/loss", "min") is None

    plateau = build_scheduler(
        optimizer, SchedulerConfig(name="plateau", patience=1), 10, "val/f1", "max"
    )
    assert isinstance(plateau["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert plateau["monitor"] == "val/f1" and plateau["scheduler"].mode == "max"

    cosine = build_scheduler(optimizer, SchedulerConfig(name="cosine"), 4, "val/loss", "min")
    lrs = []
    for _ in range(4):
        optimizer.step()
        cosine["scheduler"].step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[-1] == pytest.approx(0.0, abs=1e-9) and lrs == sorted(lrs, reverse=True)

    optimizer = build_optimizer(_params(), OptimizerConfig(lr=1.0))
    step = build_scheduler(
        optimizer, SchedulerConfig(name="step", step_size=2, factor=0.5), 10, "val/loss", "min"
    )
    for _ in range(4):
        optimizer.step()
        step["scheduler"].step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.25)
