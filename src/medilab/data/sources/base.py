"""What a data source is: its config section and how it builds a datamodule for a task.

A new source is one module: a :class:`DataSource` subclass decorated with
:func:`register_source`, listed in :mod:`medilab.data.sources.builtin`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import lightning as L
import pandas as pd

from medilab.config import DataCommon, ExperimentConfig
from medilab.data.sample_table import SampleTable
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


def register_source(source: type[DataSource]) -> type[DataSource]:
    """Class decorator: make ``source`` available as ``data.source: <source.name>``."""
    return SOURCES.register(source.name)(source)


def get_source(name: str) -> DataSource:
    """An instance of the source registered as ``name``."""
    return SOURCES.get(name)()
