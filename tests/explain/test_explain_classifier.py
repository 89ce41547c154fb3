"""CAMs for classifiers (medilab.explain.classifier): where they look, and what they refuse."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_explain_layers import tiny_swin_classifier
from torch import nn

from medilab.errors import MedilabError
from medilab.explain.classifier import explain_classifier

SIZE = 32
SQUARE = 8


def square_images(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey noise; label 1 images hold one bright 8×8 square at a random place."""
    images = 0.2 * torch.rand(n, 1, SIZE, SIZE, generator=generator)
    labels = torch.randint(0, 2, (n,), generator=generator)
    for index in torch.nonzero(labels).flatten().tolist():
        top, left = torch.randint(0, SIZE - SQUARE + 1, (2,), generator=generator).tolist()
        images[index, 0, top : top + SQUARE, left : left + SQUARE] = 1.0
    return images, labels


def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 2),
    )


@pytest.fixture(scope="module")
def square_detector() -> nn.Module:
    """A tiny CNN trained for a few dozen steps to say whether a bright square is present."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = tiny_cnn()
    for _ in range(100):  # plain gradient descent: torch.optim's first step imports dynamo (slow)
        images, labels = square_images(32, generator)
        model.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter -= 0.3 * parameter.grad
    test_images, test_labels = square_images(64, generator)
    with torch.no_grad():
        accuracy = (model(test_images).argmax(1) == test_labels).float().mean().item()
    assert accuracy > 0.95
    return model


def one_square(top: int, left: int) -> tuple[torch.Tensor, np.ndarray]:
    image = torch.full((1, SIZE, SIZE), 0.1)
    image[0, top : top + SQUARE, left : left + SQUARE] = 1.0
    inside = np.zeros((SIZE, SIZE), dtype=bool)
    inside[top : top + SQUARE, left : left + SQUARE] = True
    return image, inside


@pytest.mark.parametrize("method", ["gradcam", "eigencam", "ablationcam"])
@pytest.mark.parametrize("place", [(3, 20), (20, 4)])
def test_the_cam_peaks_on_the_bright_square(square_detector, method, place):
    image, inside = one_square(*place)
    cam = explain_classifier(square_detector, image, method, target_class=1)
    assert cam.shape == (SIZE, SIZE) and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() <= 1.0
    peak = np.unravel_index(np.argmax(cam), cam.shape)
    assert inside[peak], f"{method} peaks at {peak}, outside the square at {place}"
    assert cam[inside].mean() > 3 * cam[~inside].mean()


class CovariateCNN(nn.Module):
    """forward(image, covariates): conv features pooled ⊕ covariates → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4 + 2, 2)

    def forward(self, image: torch.Tensor, covariates: torch.Tensor) -> torch.Tensor:
        pooled = self.backbone(image).mean(dim=(2, 3))
        return self.head(torch.cat([pooled, covariates], dim=1))


def test_covariates_are_held_fixed_for_the_explained_image():
    torch.manual_seed(0)
    model = CovariateCNN()
    image, _ = one_square(4, 4)
    with pytest.raises(MedilabError, match="covariates"):
        explain_classifier(model, image, "gradcam")
    cam = explain_classifier(model, image, "gradcam", covariates=torch.tensor([0.5, 1.0]))
    assert cam.shape == (SIZE, SIZE) and np.isfinite(cam).all()
    named = explain_classifier(
        model, image, "eigencam", covariates=torch.tensor([0.5, 1.0]), target_layer="backbone.0"
    )
    assert named.shape == (SIZE, SIZE)


def test_the_model_keeps_its_train_mode():
    model = tiny_cnn().train()
    explain_classifier(model, torch.rand(1, 16, 16), "gradcam")
    assert model.training


def test_gradcam_works_for_a_frozen_model_called_under_no_grad(square_detector):
    image, inside = one_square(3, 20)
    for parameter in square_detector.parameters():
        parameter.requires_grad_(False)
    try:
        with torch.no_grad():
            cam = explain_classifier(square_detector, image, "gradcam", target_class=1)
    finally:
        for parameter in square_detector.parameters():
            parameter.requires_grad_(True)
    assert inside[np.unravel_index(np.argmax(cam), cam.shape)]


def test_swin_classifier_gives_a_map_at_input_size():
    torch.manual_seed(0)
    cam = explain_classifier(tiny_swin_classifier(), torch.rand(3, 56, 56), "gradcam")
    assert cam.shape == (56, 56) and np.isfinite(cam).all() and cam.max() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "scorecam"}, "gradcam"),
        ({"method": "gradcam", "target_class": 2}, "target_class 2"),
        ({"method": "gradcam", "target_layer": "nope"}, "'nope'"),
    ],
)
def test_bad_requests_are_one_line_errors(kwargs, message):
    with pytest.raises(MedilabError, match=message):
        explain_classifier(tiny_cnn(), torch.rand(1, 16, 16), **kwargs)
