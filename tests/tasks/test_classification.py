"""The classification module's operating point: one decision rule for every output."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medilab.config import validate_config
from medilab.tasks.classification import (
    ClassificationModule,
    class_probabilities,
    prediction_frame,
)


class FixedLogits(nn.Module):
    """Every image gets p = (0.6, 0.4)."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # a device to run on

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.tensor([[0.6, 0.4]])).expand(len(image), 2)


def _module() -> ClassificationModule:
    config = validate_config({"data": {"source": "pixel_csv", "train_csv": "train.csv"},
                              "model": {"name": "convnet"}})
    return ClassificationModule(config, FixedLogits(), num_classes=2, input_shape=(1, 4, 4))


def test_prediction_explain_target_and_decide_follow_the_val_threshold():
    module = _module().eval()
    image_probs = class_probabilities(module, torch.zeros(1, 4, 4), None)[None]
    assert module.decide(image_probs).tolist() == [0]  # no threshold: the argmax rule
    module.threshold = 0.3  # p1 = 0.4 >= 0.3: class 1, although the argmax is class 0
    assert module.decide(image_probs).tolist() == [1]  # what explain targets and titles
    probs = np.array([[0.6, 0.4], [0.8, 0.2]], np.float32)
    assert module.decide(probs).tolist() == [1, 0]
    frame = prediction_frame(["a", "b"], probs, np.array([1, 0]), threshold=module.threshold)
    assert frame["prediction"].tolist() == [1, 0]
    module.threshold = 0.4  # applied as chosen: p >= t
    assert module.decide(probs).tolist() == [1, 0]
