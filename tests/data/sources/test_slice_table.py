"""The slice_table source: 2.5D stacks of neighbouring slices, labelled from label maps."""

from __future__ import annotations

import nrrd
import numpy as np

from medilab.config import validate_config
from medilab.data.sources.slice_table import SliceTableSource


def write_volumes(root, n=3, depth=6):
    root.mkdir(parents=True, exist_ok=True)
    for v in range(n):
        volume = np.zeros((depth, 8, 8), np.float32)
        for i in range(depth):
            volume[i] = i  # slice i holds the value i
        labels = np.zeros((depth, 8, 8), np.uint8)
        labels[2:4, 3:5, 3:5] = 1
        nrrd.write(str(root / f"v{v}_image.nrrd"), volume.T)  # NRRD stores x fastest
        nrrd.write(str(root / f"v{v}_label.nrrd"), labels.T)
    return root


def test_slices_stack_neighbours_and_labels_follow_the_label_map(tmp_path):
    root = write_volumes(tmp_path / "mri")
    config = validate_config({
        "task": "classification", "model": {"name": "convnet"},
        "data": {"source": "slice_table", "root": str(root), "slices": 3}})
    dm = SliceTableSource().build_datamodule(config, None)
    images, ids = dm.arrays.images, dm.arrays.sample_ids
    assert images.shape == (18, 3, 8, 8)
    first = ids.index("v0_0000")
    middle = ids.index("v0_0003")
    # values were percentile-normalised per volume: slice order survives as ordering
    assert images[first, 0, 0, 0] == images[first, 1, 0, 0] < images[first, 2, 0, 0]
    assert images[middle, 0, 0, 0] < images[middle, 1, 0, 0] < images[middle, 2, 0, 0]
    labels = dict(zip(ids, dm.arrays.labels, strict=True))
    assert [labels[f"v0_{i:04d}"] for i in range(6)] == [0, 0, 1, 1, 0, 0]
    assert (dm.splits.groupby("patient_id")["split"].nunique() == 1).all()


def test_shared_mri_volumes(medilab_data):
    config = validate_config({
        "task": "classification", "model": {"name": "convnet"},
        "data": {"source": "slice_table", "root": str(medilab_data / "mri"), "size": [32, 32]}})
    dm = SliceTableSource().build_datamodule(config, None)
    assert dm.arrays.images.shape[1:] == (3, 32, 32)
    assert set(dm.arrays.labels) == {0, 1}


def test_a_table_patient_column_groups_the_split_and_the_bootstrap(tmp_path):
    """Two volumes of one patient never land in two splits; the scoring groups are patients."""
    import pandas as pd

    root = write_volumes(tmp_path / "mri", n=8)
    rows = [{"volume": f"v{v}_image.nrrd", "slice": i, "label": int(i in (2, 3)),
             "patient_id": f"p{v // 2}"} for v in range(8) for i in range(6)]
    pd.DataFrame(rows).to_csv(root / "slices.csv", index=False)
    config = validate_config({
        "task": "classification", "model": {"name": "convnet"}, "seed": 3,
        "data": {"source": "slice_table", "root": str(root), "table": "slices.csv",
                 "val_fraction": 0.25, "test_fraction": 0.25}})
    dm = SliceTableSource().build_datamodule(config, None)
    assert set(dm.splits["patient_id"]) == {"p0", "p1", "p2", "p3"}
    assert (dm.splits.groupby("patient_id")["split"].nunique() == 1).all()
    assert set(dm.splits["split"]) == {"train", "val", "test"}
    metadata = dm.metadata("val")
    assert metadata["patient_id"].nunique() == 1 and len(metadata) == 12  # 2 volumes × 6
