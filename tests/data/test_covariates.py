"""Covariate encoding uses training statistics only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medilab.data.covariates import CovariateEncoder, fit_covariates
from medilab.errors import MedilabError


def _manifest():
    return pd.DataFrame({
        "age": [10.0, 20.0, 30.0, 1000.0, np.nan],
        "sex": ["F", "M", "F", "X", None],
        "split": ["train", "train", "train", "val", "val"],
    })


def test_standardised_with_train_statistics_only():
    manifest = _manifest()
    encoder = fit_covariates(manifest, ["age"], ["sex"], missing_flags=False)
    mean, std = 20.0, np.std([10.0, 20.0, 30.0])
    assert encoder.means["age"] == 20.0 and encoder.stds["age"] == pytest.approx(std)
    matrix = encoder.transform(manifest)
    assert matrix.dtype == np.float32 and matrix.shape == (5, 3)
    assert matrix[3, 0] == pytest.approx((1000.0 - mean) / std)  # val outlier not in the fit
    assert matrix[4, 0] == 0.0  # missing → training mean
    assert matrix[:, 1:].tolist() == [[1, 0], [0, 1], [1, 0], [0, 0], [0, 0]]  # unseen X: zeros
    assert encoder.feature_names == ["age", "sex=F", "sex=M"]


def test_missing_flags_and_round_trip():
    manifest = _manifest()
    manifest["age_missing"] = [0, 1, 0, 0, 0]  # a manifest flag (value imputed earlier)
    encoder = fit_covariates(manifest, ["age"], ["sex"])
    assert encoder.feature_names[-2:] == ["age_missing", "sex_missing"]
    matrix = encoder.transform(manifest)
    assert matrix[:, -2].tolist() == [0, 1, 0, 0, 1]
    assert matrix[:, -1].tolist() == [0, 0, 0, 0, 1]
    again = CovariateEncoder.from_dict(encoder.to_dict())
    np.testing.assert_array_equal(again.transform(manifest), encoder.transform(manifest))


def test_errors():
    with pytest.raises(MedilabError, match="call fit"):
        CovariateEncoder(numeric=["age"]).transform(_manifest())
    with pytest.raises(MedilabError, match=r"no column\(s\) \['bmi'\]"):
        CovariateEncoder(numeric=["bmi"]).fit(_manifest())
