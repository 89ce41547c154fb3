"""New inputs of a trained classification run, predicted and written as one CSV: what every
classification source's ``predict_table`` shares (rows that could not be used keep their row
with an ``error``; a run with no usable input fails)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch

from medilab.data.datamodules.classification import ArrayImageDataset
from medilab.errors import InputFileError
from medilab.io.atomic import write_csv


@dataclass
class NewInputs:
    """``names`` as the user gave them (file, CSV entry, ``<part>_<index>`` of an npz), the
    usable images stacked (one per ``None`` in ``errors``), and per input None or why not."""

    names: list[str]
    images: np.ndarray | None
    errors: list[str | None]

    @property
    def usable(self) -> np.ndarray:
        return np.array([e is None for e in self.errors], dtype=bool)


def write_predictions(
    module: Any, trainer: L.Trainer, inputs: NewInputs, given: Path, out: Path,
    batch_size: int, covariates: np.ndarray | None = None,
) -> Path:
    """``image, prediction, prob_<class>…, error`` for every input; ``prediction`` is the
    decision at the run's operating point (binary: the val threshold, ``p >= t``). None usable:
    an error naming ``given`` and the first reason, no file; some unusable: a warning counting
    them."""
    usable = inputs.usable
    total = len(inputs.names)
    if not usable.any():
        first = next((e for e in inputs.errors if e), "no inputs")
        raise InputFileError(given, f"none of the {total} input(s) could be used (first: "
                             f"{inputs.names[0] if total else ''}: {first})")
    names = list(module.class_names)
    probs = np.zeros((total, len(names)), np.float32)
    assert inputs.images is not None
    dataset = ArrayImageDataset(inputs.images, None, np.arange(len(inputs.images)),
                                covariates=covariates)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    probs[usable] = torch.cat(trainer.predict(module, dataloaders=loader)).float().numpy()
    frame = pd.DataFrame({"image": inputs.names})
    frame["prediction"] = [names[k] if good else "" for k, good in
                           zip(module.decide(probs), usable, strict=True)]
    for k, name in enumerate(names):
        frame[f"prob_{name}"] = np.where(usable, probs[:, k].round(6), np.nan)
    frame["error"] = [e or "" for e in inputs.errors]
    written = write_csv(frame, out)
    failed = int((~usable).sum())
    if failed:
        warnings.warn(f"{failed} of {total} input(s) could not be used; their rows in {out} "
                      "say why (error column)", UserWarning, stacklevel=2)
    return written
