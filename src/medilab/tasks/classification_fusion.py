"""Late fusion of a classifier with a covariates-only member, which cannot lose to either on val.

The covariates-only member is a logistic regression (scikit-learn, L2, C = 1) on the encoded
covariates of the ``train`` split. The fused probabilities are
``p = w · p_image + (1 − w) · p_covariates``, with ``w`` chosen on ``val`` over a grid on
[0, 1] that holds both ends (``w = 1`` is the image model alone, ``w = 0`` the regression
alone): the fused model's val AUROC is at least that of the better branch. Ties in AUROC go to
the lower val log loss (a proper score, which also rewards the better-calibrated blend).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

WEIGHT_GRID = np.round(np.linspace(0.0, 1.0, 21), 4)  # weights of the image branch
ABSENT_CLASS_LOGIT = -30.0  # a class the training split lacks: (almost) never predicted
TIE = 1e-9


@dataclass
class CovariateFusion:
    """The fitted covariates-only member (``coef`` (K, F), ``intercept`` (K,): class logits of
    encoded covariates) and the image branch's weight ``weight``."""

    weight: float
    coef: list[list[float]]
    intercept: list[float]

    def covariate_probabilities(self, covariates: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(N, K)`` of the covariates-only member."""
        coef = torch.tensor(self.coef, dtype=torch.float32, device=covariates.device)
        intercept = torch.tensor(self.intercept, dtype=torch.float32, device=covariates.device)
        return torch.softmax(covariates.float() @ coef.T + intercept, dim=1)

    def fuse(self, image_probs: torch.Tensor, covariates: torch.Tensor) -> torch.Tensor:
        """``weight · image_probs + (1 − weight) · covariate probabilities``."""
        cov = self.covariate_probabilities(covariates).to(image_probs.device)
        return self.weight * image_probs.float() + (1.0 - self.weight) * cov

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> CovariateFusion:
        return cls(weight=float(state["weight"]), coef=[list(map(float, r)) for r in state["coef"]],
                   intercept=[float(v) for v in state["intercept"]])


def fit_covariate_member(
    features: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[list[list[float]], list[float]] | None:
    """Logistic regression of ``labels`` on ``features`` (the train split's encoded covariates)
    as class logits ``(coef (K, F), intercept (K,))``; None when the labels hold one class."""
    from sklearn.linear_model import LogisticRegression

    labels = np.asarray(labels, dtype=np.int64)
    present = np.unique(labels)
    if len(present) < 2 or features.shape[1] == 0:
        return None
    model = LogisticRegression(C=1.0, max_iter=2000).fit(np.asarray(features, np.float64), labels)
    coef = np.zeros((num_classes, features.shape[1]))
    intercept = np.full(num_classes, ABSENT_CLASS_LOGIT)
    classes = model.classes_.astype(int)
    if len(classes) == 2:  # one row: the logit of classes_[1] against classes_[0]
        intercept[classes[0]] = 0.0
        coef[classes[1]], intercept[classes[1]] = model.coef_[0], model.intercept_[0]
    else:
        coef[classes], intercept[classes] = model.coef_, model.intercept_
    return coef.tolist(), intercept.tolist()


def auroc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Binary: AUROC of class 1; more classes: macro one-vs-rest AUROC; NaN without every
    class."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    k = probs.shape[1]
    if len(np.unique(labels)) < k:
        return float("nan")
    if k == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro",
                               labels=list(range(k))))


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    picked = np.asarray(probs, np.float64)[np.arange(len(labels)), np.asarray(labels, int)]
    return float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())


def choose_weight(
    image_probs: np.ndarray, covariate_probs: np.ndarray, labels: np.ndarray
) -> tuple[float, list[dict[str, float]]]:
    """The image weight on :data:`WEIGHT_GRID` of highest val AUROC (ties, or AUROC undefined:
    lowest log loss), and every grid point's scores."""
    rows = []
    for w in WEIGHT_GRID:
        fused = w * image_probs + (1.0 - w) * covariate_probs
        rows.append({"weight": float(w), "auroc": auroc(fused, labels),
                     "log_loss": log_loss(fused, labels)})
    aurocs = np.array([r["auroc"] for r in rows])
    candidates = (np.flatnonzero(aurocs >= np.nanmax(aurocs) - TIE)
                  if np.isfinite(aurocs).any() else np.arange(len(rows)))
    best = min(candidates, key=lambda i: rows[i]["log_loss"])
    return rows[best]["weight"], rows
