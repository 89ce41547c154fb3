"""What a data source is: its config section and how it builds a datamodule for a task.

A new source is one module: a :class:`DataSource` subclass decorated with
:func:`register_source`, listed in :mod:`medilab.data.sources.builtin`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import pandas as pd

from medilab.config import DataCommon, ExperimentConfig
from medilab.data.formats.arrays import ImageArrays
from medilab.data.sample_table import SampleTable
from medilab.errors import MedilabError
from medilab.registry import SOURCES


class DataSource(ABC):
    """Files on disk → a LightningDataModule split by a saved (or new) splits table."""

    name: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]]
    Config: ClassVar[type[DataCommon]]

    @abstractmethod
    def build_datamodule(
        self, config: ExperimentConfig, splits: pd.DataFrame | None
    ) -> L.LightningDataModule:
        """The data, split by ``splits`` when given (checked against the data), else split anew
        with :func:`medilab.data.splits.training_splits` (``datamodule.splits``)."""

    def sample_table(self, config: ExperimentConfig, *, pixels: bool = True
                     ) -> SampleTable | None:
        """The samples ``medilab data verify`` checks; ``pixels`` False: only what needs no
        decoding (None when that is nothing beyond what building the datamodule checks)."""
        return None

    def read_unlabelled(self, config: ExperimentConfig, path: Path) -> ImageArrays | None:
        """Classification: the pixels of an unlabelled table to predict as a submission CSV
        (``ImageId,Label``, Kaggle's layout); None: this source predicts through
        :meth:`predict_table` instead."""
        return None

    def predict_table(
        self, module: Any, config: ExperimentConfig, inputs: Path, out: Path,
        trainer: L.Trainer, **options: Any,
    ) -> Path:
        """Classification: predict new inputs of a trained ``module`` into the CSV ``out``
        (:func:`medilab.data.sources.new_inputs.write_predictions`)."""
        raise MedilabError(f"predict: runs on data.source {self.name!r} cannot read new "
                           "inputs yet; predict with a run on image_table or medmnist data")

    def explain_inputs(
        self, config: ExperimentConfig, inputs: Path, covariate_state: dict[str, Any] | None,
        input_shape: tuple[int, ...] = (),
    ) -> list[tuple[str, Any, Any, Any]]:
        """Classification: (name, prepared image (C, H, W) tensor, pixels to display,
        covariates or None) per new input, for CAM overlays; ``input_shape``: the model's."""
        raise MedilabError(f"explain: runs on data.source {self.name!r} read no image files "
                           "to explain; explain a run on image_table or medmnist data")


def register_source(source: type[DataSource]) -> type[DataSource]:
    """Class decorator: make ``source`` available as ``data.source: <source.name>``."""
    return SOURCES.register(source.name)(source)


def get_source(name: str) -> DataSource:
    """An instance of the source registered as ``name``."""
    return SOURCES.get(name)()
