"""What a data source hands ``medilab data verify``: one row per sample, the files to read and
the rules the samples must follow (see :mod:`medilab.data.verify`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medilab.data.formats.arrays import ImageArrays

FILE_COLUMNS = ("image", "mask", "fov")  # columns holding files that verify reads


@dataclass
class SampleTable:
    """Samples of one configured dataset, as ``data verify`` checks them.

    ``table`` has ``sample_id`` and any of: ``patient_id``, ``label`` (class text),
    ``image`` / ``mask`` / ``fov`` (files or series folders), ``boxes`` (list of
    ``[x1, y1, x2, y2]``), ``box_labels``, and the ``covariates`` columns.
    ``split_table`` and ``split_options`` are what the source passes to
    :func:`medilab.data.splits.training_splits`; ``arrays`` holds the pixels of in-memory
    sources (digits, MedMNIST), one per row, instead of files.
    """

    table: pd.DataFrame
    split_table: pd.DataFrame
    split_options: dict[str, Any] = field(default_factory=dict)
    classes: list[str] | None = None  # the class names labels must be one of
    box_classes: list[str] | None = None  # detection: the names box labels must be one of
    label_names: dict[str, str] = field(default_factory=dict)  # split label → what it means
    mask_classes: int | None = None  # segmentation: mask values lie in 0..mask_classes-1
    covariates: list[str] = field(default_factory=list)
    same_size: bool = False  # every image must have one size (no resize configured)
    arrays: np.ndarray | None = None

    @property
    def file_columns(self) -> list[str]:
        """The file columns this table has."""
        return [c for c in FILE_COLUMNS if c in self.table.columns]


def array_sample_table(arrays: ImageArrays, given: pd.DataFrame | None = None) -> SampleTable:
    """In-memory samples (ids, labels, pixels); ``given``: the data's own split."""
    assert arrays.labels is not None
    table = pd.DataFrame({"sample_id": arrays.sample_ids, "label": arrays.labels})
    return SampleTable(table, table, {"given": given} if given is not None else {},
                       arrays=arrays.images)
