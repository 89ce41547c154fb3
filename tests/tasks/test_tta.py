"""Test-time augmentation by flips: the averaging itself, classification modules (2D and 3D)
and segmentation, where evaluation.tta: flips is mirror TTA."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medilab.config import validate_config
from medilab.errors import ConfigError
from medilab.tasks.classification import ClassificationModule
from medilab.tasks.segmentation import segmentation_flips
from medilab.tasks.tta import flip_views, mean_over_flips, mirror_axes, tta_record
from segmentation_samples import circles_config


def classification_config(**evaluation):
    return validate_config({
        "data": {"source": "pixel_csv", "train_csv": "unused.csv"},
        "model": {"name": "simple_nn"}, "evaluation": evaluation})


def test_mean_over_flips_averages_what_each_view_sees():
    image = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # (N, C, H, W)

    def top_left(x):  # a "probability" that sees only the top-left pixel
        return x[:, :, 0, 0]

    # views: as is (1), rows flipped (3), columns flipped (2), both (4)
    assert mean_over_flips(top_left, image, mirror_axes(2)).item() == pytest.approx(2.5)
    assert mean_over_flips(top_left, image, mirror_axes(2, [1])).item() == pytest.approx(1.5)
    assert mean_over_flips(top_left, image, [()]).item() == pytest.approx(1.0)
    # per-pixel outputs are flipped back before averaging: identity stays identity
    assert torch.equal(mean_over_flips(lambda x: x, image, mirror_axes(2), dense=True), image)
    assert tta_record(mirror_axes(2, [1])) == {
        "mode": "flips", "axes": [1], "views": 2,
        "rule": "mean of the class probabilities over every combination of flips of spatial "
                "axes [1] (0 = rows)"}


class PooledLinear(nn.Module):
    """Global average pooling then a linear layer: the same output for any flipped input."""

    def __init__(self, channels: int = 1, dims: int = 2) -> None:
        super().__init__()
        self.dims = tuple(range(2, 2 + dims))
        self.linear = nn.Linear(channels, 3)

    def forward(self, x):
        return self.linear(x.mean(self.dims))


class FirstRow(nn.Module):
    """Logits from the first row of a 1-channel image: not flip-invariant."""

    def forward(self, x):
        return x[:, 0, 0, :3] * 3.0


@pytest.mark.parametrize("dims", [2, 3])
def test_a_flip_invariant_classifier_gives_the_same_probabilities(dims):
    torch.manual_seed(0)
    shape = (1, *([5] * dims))
    images = torch.randn(4, *shape)
    plain = ClassificationModule(classification_config(), PooledLinear(dims=dims), 3, shape)
    flipped = ClassificationModule(classification_config(tta="flips"), plain.model, 3, shape)
    assert len(flip_views(flipped.config, dims)) == 2 ** dims
    with torch.no_grad():
        expected = plain.probabilities({"image": images})
        torch.testing.assert_close(flipped.probabilities({"image": images}), expected)


def test_tta_probabilities_are_the_mean_of_the_flipped_views():
    images = torch.randn(2, 1, 4, 4)
    module = ClassificationModule(classification_config(tta="flips", tta_axes=[1]), FirstRow(),
                                  3, (1, 4, 4))
    module.temperature = 2.0
    views = [images, images.flip(3)]  # columns flipped (axis 1)
    expected = sum(torch.softmax(FirstRow()(v) / 2.0, dim=1) for v in views) / 2
    torch.testing.assert_close(module.predict_step({"image": images}, 0), expected)
    assert not torch.allclose(expected, torch.softmax(FirstRow()(images) / 2.0, dim=1))


def test_segmentation_tta_flips_is_mirror_tta(tmp_path):
    mirror = validate_config(circles_config(tmp_path, inference={"mirror_tta": True}))
    flips = validate_config(circles_config(tmp_path, evaluation={"tta": "flips"}))
    plain = validate_config(circles_config(tmp_path))
    assert segmentation_flips(mirror, 2) == segmentation_flips(flips, 2) == mirror_axes(2)
    assert segmentation_flips(plain, 2) == [()]
    one = validate_config(circles_config(tmp_path, evaluation={"tta": "flips", "tta_axes": [1]}))
    assert segmentation_flips(one, 2) == [(), (3,)]
    with pytest.raises(ConfigError, match="evaluation.tta_axes \\[2\\] names an axis outside"):
        validate_config(circles_config(tmp_path, evaluation={"tta": "flips", "tta_axes": [2]}))
    with pytest.raises(ConfigError, match="tta_axes \\[3\\]: spatial axes are 0"):
        classification_config(tta="flips", tta_axes=[3])


def test_tasks_without_tta_refuse_it(tmp_path):
    with pytest.raises(ConfigError, match="evaluation.tta: 'flips' is not available for task "
                                          "'detection'"):
        validate_config({"task": "detection",
                         "data": {"source": "box_table", "root": str(tmp_path)},
                         "model": {"name": "fasterrcnn_small"}, "evaluation": {"tta": "flips"}})
