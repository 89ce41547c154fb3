"""Mean-probability ensemble model."""

import pytest
import torch
from torch import nn

from medilab.models.ensemble import MeanProbabilityEnsemble


def test_softmax_of_the_output_is_the_mean_of_the_members_probabilities():
    torch.manual_seed(0)
    members = [nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(1, 3, 1)]
    x = torch.randn(2, 1, 8, 9)
    out = MeanProbabilityEnsemble(members)(x)
    expected = (torch.softmax(members[0](x), 1) + torch.softmax(members[1](x), 1)) / 2
    assert out.shape == (2, 3, 8, 9)
    assert torch.allclose(torch.softmax(out, 1), expected, atol=1e-6)


def test_one_member_gives_its_own_probabilities_and_none_is_refused():
    member = nn.Linear(4, 3)
    x = torch.randn(5, 4)
    probs = torch.softmax(MeanProbabilityEnsemble([member])(x), 1)
    assert torch.allclose(probs, torch.softmax(member(x), 1), atol=1e-6)
    with pytest.raises(ValueError, match="at least one member"):
        MeanProbabilityEnsemble([])


def test_members_taking_covariates_get_them():
    class WithCovariates(nn.Module):
        def forward(self, image: torch.Tensor, covariates: torch.Tensor) -> torch.Tensor:
            return image.flatten(1)[:, :2] + covariates

    image, covariates = torch.randn(3, 1, 2, 2), torch.randn(3, 2)
    out = MeanProbabilityEnsemble([WithCovariates(), WithCovariates()])(image, covariates)
    expected = torch.softmax(image.flatten(1)[:, :2] + covariates, 1)
    assert torch.allclose(torch.softmax(out, 1), expected, atol=1e-6)
