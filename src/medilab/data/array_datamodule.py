"""A LightningDataModule over in-memory image arrays with a saved train/val split."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from medilab.data.digits import ImageArrays
from medilab.errors import MedilabError

Transform = Callable[[torch.Tensor], torch.Tensor]


class ArrayImageDataset(Dataset):
    """Items are dicts: ``image`` (C, H, W), ``label`` (when known) and ``index``."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray | None,
        indices: np.ndarray,
        transform: Transform | None = None,
    ) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = None if labels is None else torch.from_numpy(labels)
        self.indices = torch.from_numpy(indices)
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
        return sample


def stratified_split(
    arrays: ImageArrays, val_fraction: float, seed: int
) -> pd.DataFrame:
    """A seeded, label-stratified train/val split as a ``sample_id, split, label`` table."""
    from sklearn.model_selection import train_test_split

    if arrays.labels is None:
        raise MedilabError("cannot split unlabelled data into train/val")
    positions = np.arange(len(arrays.sample_ids))
    train_pos, val_pos = train_test_split(
        positions, test_size=val_fraction, random_state=seed, stratify=arrays.labels
    )
    split = np.empty(len(positions), dtype=object)
    split[train_pos] = "train"
    split[val_pos] = "val"
    return pd.DataFrame({"sample_id": arrays.sample_ids, "split": split, "label": arrays.labels})


class ArrayClassificationDataModule(L.LightningDataModule):
    """Serves ``arrays`` split by ``splits`` (a ``sample_id, split`` table)."""

    def __init__(
        self,
        arrays: ImageArrays,
        splits: pd.DataFrame,
        batch_size: int,
        num_workers: int = 0,
        train_transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.arrays = arrays
        self.splits = splits
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_transform = train_transform
        self.seed = seed
        self._positions = _positions_by_split(arrays.sample_ids, splits)

    @property
    def num_classes(self) -> int:
        assert self.arrays.labels is not None
        return int(self.arrays.labels.max()) + 1

    @property
    def in_channels(self) -> int:
        return self.arrays.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.arrays.images.shape[2:])  # type: ignore[return-value]

    @property
    def split_names(self) -> list[str]:
        return list(self._positions)

    def dataset(self, split: str, train: bool = False) -> ArrayImageDataset:
        transform = self.train_transform if train else None
        return ArrayImageDataset(
            self.arrays.images, self.arrays.labels, self._positions[split], transform
        )

    def loader(self, split: str, train: bool = False) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.dataset(split, train=train),
            batch_size=self.batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            generator=generator if train else None,
            drop_last=train and len(self._positions[split]) > self.batch_size,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def labels(self, split: str) -> np.ndarray:
        assert self.arrays.labels is not None
        return self.arrays.labels[self._positions[split]]

    def sample_ids(self, split: str) -> list[str]:
        return [self.arrays.sample_ids[i] for i in self._positions[split]]


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
