"""A LightningDataModule over in-memory image arrays with a saved train/val(/test) split.

Every classification source (pixel CSVs, MedMNIST, image tables, 2.5D slices) ends here: images
(N, C, H, W) or (N, 1, D, H, W) float32, labels, one id per sample and, optionally, a metadata
table (patient, covariates) aligned with the samples. Covariates are encoded with statistics of
the training rows only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Literal

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from medilab.data.covariates import CovariateEncoder
from medilab.data.formats.arrays import ImageArrays
from medilab.data.loading import loader_options, pins_memory, resolve_workers
from medilab.data.transforms.augment import build_image_augmentation
from medilab.errors import ConfigError, MedilabError

Transform = Callable[[torch.Tensor], torch.Tensor]


class ArrayImageDataset(Dataset):
    """Items: ``image``, ``label`` (when known), ``covariates`` (when given), ``index``."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray | None,
        indices: np.ndarray,
        transform: Transform | None = None,
        covariates: np.ndarray | None = None,
    ) -> None:
        images = np.ascontiguousarray(images)
        # torch warns on read-only arrays (np.load, memory maps): hand it a writable copy
        self.images = torch.from_numpy(images if images.flags.writeable else images.copy())
        self.labels = None if labels is None else torch.from_numpy(np.array(labels))  # a copy
        self.covariates = None if covariates is None else torch.from_numpy(covariates)
        self.indices = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        index = self.indices[item]
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        sample = {"image": image, "index": index}
        if self.labels is not None:
            sample["label"] = self.labels[index]
        if self.covariates is not None:
            sample["covariates"] = self.covariates[index]
        return sample


class ArrayClassificationDataModule(L.LightningDataModule):
    """Serves ``arrays`` split by ``splits`` (a ``sample_id, split`` table)."""

    def __init__(
        self,
        arrays: ImageArrays,
        splits: pd.DataFrame,
        batch_size: int,
        num_workers: int | Literal["auto"] = 0,
        train_transform: Transform | None = None,
        seed: int = 0,
        *,
        table: pd.DataFrame | None = None,
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        class_names: Sequence[str] | None = None,
        positive_class: str | None = None,
        encoder: CovariateEncoder | None = None,
        balanced: bool = False,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.arrays = arrays
        self.splits = splits
        self.batch_size = batch_size
        # workers, pinned memory, persistent workers ("auto" workers from the machine)
        self.num_workers = resolve_workers(num_workers)
        self.pin_memory = pin_memory
        self.train_transform = train_transform
        self.seed = seed
        self.balanced = balanced
        self.table = table.reset_index(drop=True) if table is not None else None
        self._positions = _positions_by_split(arrays.sample_ids, splits)
        self._class_names = list(class_names) if class_names is not None else None
        self._check_class_names()
        if positive_class is not None:
            self._make_positive(positive_class)
        self.encoder = encoder
        self.covariates: np.ndarray | None = None
        if (numeric or categorical or encoder) and self.table is not None:
            if self.encoder is None:
                train_rows = self.table.iloc[self._positions["train"]]
                self.encoder = CovariateEncoder(list(numeric), list(categorical)).fit(train_rows)
            self.covariates = self.encoder.transform(self.table)

    def _check_class_names(self) -> None:
        if self._class_names is None or self.arrays.labels is None or not len(self.arrays.labels):
            return
        found = int(self.arrays.labels.max()) + 1
        if found > len(self._class_names):
            raise ConfigError(f"data.class_names: {len(self._class_names)} name(s) "
                              f"{self._class_names} for labels 0..{found - 1}")

    def _make_positive(self, positive: str) -> None:
        """Binary data: serve ``positive`` as class 1 (labels and names swapped when it is
        class 0), so sensitivity, ROC and the threshold are about it."""
        names = self.class_names
        if len(names) != 2:
            raise ConfigError(f"data.positive_class: {positive!r} is for two classes; this data "
                              f"has {len(names)} ({', '.join(names)})")
        if positive not in names:
            raise ConfigError(f"data.positive_class: {positive!r} is not one of the classes "
                              f"{names} (name them with data.class_names)")
        if names.index(positive) == 0:
            assert self.arrays.labels is not None
            self.arrays = replace(self.arrays, labels=1 - self.arrays.labels)
            self._class_names = [names[1], names[0]]

    @property
    def num_classes(self) -> int:
        if self._class_names is not None:
            return len(self._class_names)
        assert self.arrays.labels is not None
        return int(self.arrays.labels.max()) + 1

    @property
    def class_names(self) -> list[str]:
        return self._class_names or [str(k) for k in range(self.num_classes)]

    @property
    def in_channels(self) -> int:
        return self.arrays.images.shape[1]

    @property
    def image_size(self) -> tuple[int, ...]:
        return tuple(self.arrays.images.shape[2:])

    @property
    def num_covariates(self) -> int:
        return 0 if self.covariates is None else int(self.covariates.shape[1])

    @property
    def split_names(self) -> list[str]:
        return list(self._positions)

    def dataset(self, split: str, train: bool = False) -> ArrayImageDataset:
        transform = self.train_transform if train else None
        return ArrayImageDataset(
            self.arrays.images, self.arrays.labels, self._positions[split], transform,
            self.covariates,
        )

    def loader(self, split: str, train: bool = False) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        sampler = self.balanced_sampler(split, generator) if train and self.balanced else None
        return DataLoader(
            self.dataset(split, train=train),
            batch_size=self.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            generator=generator if train else None,
            drop_last=train and len(self._positions[split]) > self.batch_size,
            **loader_options(self.num_workers, device_is_cuda=self.pin_memory, train=train),
        )

    def balanced_sampler(
        self, split: str, generator: torch.Generator
    ) -> torch.utils.data.WeightedRandomSampler:
        """Draws with replacement, each class equally often on average (weights 1 / count)."""
        labels = self.labels(split)
        counts = np.bincount(labels, minlength=self.num_classes).astype(float)
        weights = 1.0 / counts[labels]
        return torch.utils.data.WeightedRandomSampler(
            torch.from_numpy(weights), num_samples=len(labels), replacement=True,
            generator=generator)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def labels(self, split: str) -> np.ndarray:
        assert self.arrays.labels is not None
        return self.arrays.labels[self._positions[split]]

    def sample_ids(self, split: str) -> list[str]:
        return [self.arrays.sample_ids[i] for i in self._positions[split]]

    def split_covariates(self, split: str) -> np.ndarray | None:
        """The encoded covariates ``(N, F)`` of ``split`` in loader order (None without)."""
        return None if self.covariates is None else self.covariates[self._positions[split]]

    def metadata(self, split: str) -> pd.DataFrame | None:
        """The metadata rows (patient, raw covariates) of ``split``, in loader order."""
        if self.table is None:
            return None
        return self.table.iloc[self._positions[split]].reset_index(drop=True)


def _positions_by_split(sample_ids: list[str], splits: pd.DataFrame) -> dict[str, np.ndarray]:
    position = {sid: i for i, sid in enumerate(sample_ids)}
    ids = splits["sample_id"].astype(str)
    unknown = ids[~ids.isin(position)]
    if len(unknown):
        raise MedilabError(
            f"splits.csv: sample_id {unknown.iloc[0]!r} is not in the data "
            "(the splits file belongs to other data)"
        )
    result: dict[str, np.ndarray] = {}
    for split, group in splits.assign(sample_id=ids).groupby("split", sort=False):
        result[str(split)] = np.array([position[s] for s in group["sample_id"]], dtype=np.int64)
    if "train" not in result:
        raise MedilabError("splits.csv: no sample is in the 'train' split")
    return result


def classification_datamodule(
    config: Any, arrays: ImageArrays, splits: pd.DataFrame, **options: Any
) -> ArrayClassificationDataModule:
    """The one way a source builds its classification datamodule: batch size, workers, pinned
    memory, augmentation, seed, sampler and class settings from ``config``; ``options`` (e.g.
    ``table``, ``numeric``/``categorical`` covariates, ``class_names``) add or override."""
    data = config.data
    settings: dict[str, Any] = {
        "batch_size": data.batch_size, "num_workers": data.num_workers,
        "pin_memory": pins_memory(config),
        "train_transform": build_image_augmentation(data.augment), "seed": config.seed,
        "balanced": data.balanced_sampler, "class_names": data.class_names,
        "positive_class": data.positive_class,
    }
    return ArrayClassificationDataModule(arrays, splits, **{**settings, **options})
