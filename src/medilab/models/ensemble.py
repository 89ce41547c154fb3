"""Mean-probability ensemble: several trained models as one (nnU-Net-style softmax averaging)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

PROBABILITY_FLOOR = 1e-12


class MeanProbabilityEnsemble(nn.Module):
    """The members' class probabilities (softmax over dim 1) averaged; returns the log of the
    mean, so a softmax on top gives the mean probabilities and argmax the ensemble's vote.
    (Sliding-window inference averages per window, then blends the windows' log-means.)"""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Inputs as each member takes them (an image, or an image and covariates)."""
        probs = torch.stack([torch.softmax(m(*inputs).float(), dim=1) for m in self.members])
        probs = probs.mean(0)
        return torch.log(probs.clamp_min(PROBABILITY_FLOOR))
