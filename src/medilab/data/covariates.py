"""Encode tabular covariates (age, sex, ...) as a float vector, fitted on the training split only.

Numeric columns are standardised with the training mean and standard deviation; categorical
columns are one-hot over the training categories (unseen or missing values give all zeros);
with ``missing_flags`` (default) every covariate adds a 0/1 ``<col>_missing`` feature (set where
the value is NaN or the manifest's ``<col>_missing`` flag is 1), and missing numeric values are
filled with the training mean (0 after standardisation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medilab.errors import MedilabError


@dataclass
class CovariateEncoder:
    """``fit(train_df)`` then ``transform(df) -> (N, n_features) float32``."""

    numeric: Sequence[str] = ()
    categorical: Sequence[str] = ()
    missing_flags: bool = True
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    flagged: list[str] = field(default_factory=list)
    fitted: bool = False

    def fit(self, train: pd.DataFrame) -> CovariateEncoder:
        """Learn means, standard deviations and categories from the training rows only."""
        self._check_columns(train)
        self.numeric, self.categorical = list(self.numeric), list(self.categorical)
        self.flagged = []
        for column in self.numeric:
            values = pd.to_numeric(train[column], errors="coerce")
            present = values.dropna()
            if present.empty:
                raise MedilabError(f"covariate {column!r}: no numeric values in the training split")
            self.means[column] = float(present.mean())
            std = float(present.std(ddof=0))
            self.stds[column] = std if std > 0 else 1.0
        for column in self.categorical:
            self.categories[column] = sorted({str(v) for v in train[column].dropna()})
        if self.missing_flags:
            self.flagged = [*self.numeric, *self.categorical]
        self.fitted = True
        return self

    @property
    def feature_names(self) -> list[str]:
        names = list(self.numeric)
        for column in self.categorical:
            names += [f"{column}={c}" for c in self.categories.get(column, [])]
        return names + [f"{column}_missing" for column in self.flagged]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """The (N, n_features) float32 matrix of ``df`` with the fitted statistics."""
        if not self.fitted:
            raise MedilabError("covariate encoder: call fit() on the training split first")
        self._check_columns(df)
        parts, flags = [], []
        for column in self.numeric:
            values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
            missing = np.isnan(values) | self._flag(df, column)
            values = np.where(missing, self.means[column], values)
            parts.append(((values - self.means[column]) / self.stds[column])[:, None])
        for column in self.categorical:
            values = df[column].map(lambda v: None if pd.isna(v) else str(v)).to_numpy()
            cats = self.categories[column]
            parts.append(np.stack([values == c for c in cats], axis=1).astype(float)
                         if cats else np.zeros((len(df), 0)))
        for column in self.flagged:
            missing = df[column].isna().to_numpy() | self._flag(df, column)
            flags.append(missing.astype(float)[:, None])
        if not parts and not flags:
            return np.zeros((len(df), 0), dtype=np.float32)
        return np.concatenate([*parts, *flags], axis=1).astype(np.float32)

    def problems(self, df: pd.DataFrame) -> list[str | None]:
        """Per row None, or why its covariates cannot be encoded as in training: a numeric
        value that is not a number, a category training never saw (missing values are fine:
        they have their flag)."""
        self._check_columns(df)
        found: list[str | None] = [None] * len(df)
        for column in self.numeric:
            values = df[column]
            bad = values.notna() & pd.to_numeric(values, errors="coerce").isna()
            for row in np.flatnonzero(bad.to_numpy()):
                found[row] = found[row] or f"{column} {values.iloc[row]!r} is not a number"
        for column in self.categorical:
            seen = self.categories.get(column, [])
            for row, value in enumerate(df[column]):
                if not pd.isna(value) and str(value) not in seen:
                    found[row] = found[row] or (f"{column} {str(value)!r} was not seen in "
                                                f"training (seen: {', '.join(seen)})")
        return found

    def fit_transform(self, train: pd.DataFrame) -> np.ndarray:
        return self.fit(train).transform(train)

    @staticmethod
    def _flag(df: pd.DataFrame, column: str) -> np.ndarray:
        name = f"{column}_missing"
        if name not in df.columns:
            return np.zeros(len(df), dtype=bool)
        return df[name].fillna(0).astype(int).to_numpy() == 1

    def _check_columns(self, df: pd.DataFrame) -> None:
        missing = [c for c in (*self.numeric, *self.categorical) if c not in df.columns]
        if missing:
            raise MedilabError(f"covariates: manifest has no column(s) {missing}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly state, to save beside a checkpoint."""
        state = asdict(self)
        state["numeric"], state["categorical"] = list(self.numeric), list(self.categorical)
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> CovariateEncoder:
        return cls(**state)


def fit_covariates(
    manifest: pd.DataFrame,
    numeric: Sequence[str] = ("age",),
    categorical: Sequence[str] = ("sex",),
    *,
    missing_flags: bool = True,
    split_column: str = "split",
    train_split: str = "train",
) -> CovariateEncoder:
    """A :class:`CovariateEncoder` fitted on the rows whose ``split_column`` is ``train_split``."""
    if split_column not in manifest.columns:
        raise MedilabError(f"covariates: manifest has no {split_column!r} column (train rows)")
    train = manifest[manifest[split_column] == train_split]
    if train.empty:
        raise MedilabError(f"covariates: no rows with {split_column} == {train_split!r}")
    encoder = CovariateEncoder(list(numeric), list(categorical), missing_flags=missing_flags)
    return encoder.fit(train)
