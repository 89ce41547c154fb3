"""Splits: grouped by patient, stratified, seeded; leakage check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medilab.data.splits import (
    check_file,
    check_fractions,
    check_leakage,
    load_splits,
    make_splits,
    read_manifest,
    split_file,
    training_splits,
)
from medilab.errors import InputFileError, MedilabError


@pytest.fixture
def manifest():
    """300 samples from 100 patients (1-5 samples each), ~30 % positive patients."""
    rng = np.random.default_rng(0)
    rows = []
    for patient in range(100):
        label = int(rng.random() < 0.3)
        for visit in range(int(rng.integers(1, 6))):
            rows.append({"sample_id": f"p{patient}_{visit}", "patient_id": f"p{patient}",
                         "label": label})
    return pd.DataFrame(rows)


def _ratio(frame):
    return frame["label"].mean()


def test_train_val_test_grouped_and_stratified(manifest):
    splits = make_splits(manifest, val=0.2, test=0.2, seed=3)
    assert list(splits.columns) == ["sample_id", "split", "patient_id"]
    assert set(splits["split"]) == {"train", "val", "test"}
    assert check_leakage(splits).empty
    merged = manifest.assign(split=splits["split"])
    overall = _ratio(manifest)
    for name, part in merged.groupby("split"):
        assert abs(_ratio(part) - overall) < 0.05, name
    fractions = merged["split"].value_counts(normalize=True)
    assert abs(fractions["test"] - 0.2) < 0.06 and abs(fractions["val"] - 0.2) < 0.06


def test_folds(manifest):
    splits = make_splits(manifest, folds=5, seed=1)
    assert sorted(set(splits["split"])) == [f"fold{k}" for k in range(5)]
    assert check_leakage(splits).empty
    merged = manifest.assign(split=splits["split"])
    for _, part in merged.groupby("split"):
        assert abs(_ratio(part) - _ratio(manifest)) < 0.05


def test_seeded(manifest):
    a = make_splits(manifest, seed=7)
    assert a.equals(make_splits(manifest, seed=7))
    assert not a["split"].equals(make_splits(manifest, seed=8)["split"])


def test_without_group(manifest):
    splits = make_splits(manifest.drop(columns="patient_id"), group=None, val=0.25)
    assert "patient_id" not in splits.columns
    assert abs((splits["split"] == "val").mean() - 0.25) < 0.02


def test_leakage_check_catches_planted_leak(manifest):
    splits = make_splits(manifest, seed=0)
    victim = splits.loc[splits["split"] == "train", "patient_id"].iloc[0]
    row = splits.index[(splits["patient_id"] == victim)][0]
    splits.loc[row, "split"] = "val"
    if (splits["patient_id"] == victim).sum() == 1:  # a one-sample patient: plant a second row
        extra = splits.loc[[row]].assign(sample_id="planted", split="train")
        splits = pd.concat([splits, extra], ignore_index=True)
    leaks = check_leakage(splits)
    assert leaks["patient_id"].tolist() == [victim]
    assert leaks["splits"].iloc[0] == "train,val"


def test_nih1000_repo_split_leakage(medilab_data):
    table = read_manifest(medilab_data / "nih1000" / "metadata.csv")
    leaks = check_leakage(table, split_column="repo_split", group="patient_id")
    # the data README says 30; the shipped metadata.csv has 24 patients in two repo splits
    per_patient = table.groupby("patient_id")["repo_split"].nunique()
    assert len(leaks) == int((per_patient > 1).sum()) == 24
    assert check_leakage(make_splits(table, test=0.1, seed=0)).empty


def test_too_many_folds_is_a_medilab_error():
    from medilab.errors import MedilabError

    small = pd.DataFrame({"sample_id": list("abcd"), "patient_id": [1, 1, 2, 2],
                          "label": [0, 0, 1, 1]})
    with pytest.raises(MedilabError, match="cannot make 5 splits"):
        make_splits(small, folds=5)


@pytest.mark.parametrize(
    ("val", "test", "folds", "message"),
    [
        (0.2, 0.9, None, "val + test must be < 1 (got 0.2 + 0.9)"),
        (0.5, 0.5, None, "val + test must be < 1 (got 0.5 + 0.5)"),
        (1.5, 0.0, None, "val must be a fraction in [0, 1) (got 1.5)"),
        (0.2, -0.1, None, "test must be a fraction in [0, 1) (got -0.1)"),
        (0.2, 0.0, 1, "folds must be at least 2 (got 1)"),
    ],
)
def test_fractions_checked_up_front(manifest, val, test, folds, message):
    with pytest.raises(MedilabError) as info:
        make_splits(manifest, val=val, test=test, folds=folds)
    assert str(info.value) == message
    with pytest.raises(MedilabError):
        check_fractions(val, test, folds)


def test_folds_ignore_val_in_fraction_check(manifest):
    check_fractions(0.5, 0.5, folds=3)  # val is not used with folds
    splits = make_splits(manifest, val=0.5, test=0.5, folds=3, seed=0)
    assert set(splits["split"]) == {"test", "fold0", "fold1", "fold2"}


def test_split_file_and_check_file_errors_name_the_csv(tmp_path, manifest):
    csv = tmp_path / "manifest.csv"
    manifest.to_csv(csv, index=False)
    with pytest.raises(InputFileError) as info:
        split_file(csv, tmp_path / "s.csv", stratify="diagnosis")
    assert str(info.value) == (
        f"{csv}: stratify column 'diagnosis' not found; has sample_id, patient_id, label"
    )
    with pytest.raises(MedilabError) as option:
        split_file(tmp_path / "absent.csv", tmp_path / "s.csv", val=0.7, test=0.3)
    assert str(option.value) == "val + test must be < 1 (got 0.7 + 0.3)"
    assert not (tmp_path / "s.csv").exists()
    with pytest.raises(InputFileError) as check:
        check_file(csv)
    assert str(check.value) == (
        f"{csv}: column 'split' not found; has sample_id, patient_id, label"
    )
    split_file(csv, tmp_path / "s.csv", seed=0)
    assert check_file(tmp_path / "s.csv").empty
    wide = pd.DataFrame({f"c{i}": [1] for i in range(20)})
    wide.to_csv(tmp_path / "wide.csv", index=False)
    with pytest.raises(InputFileError) as many:
        load_splits(tmp_path / "wide.csv")
    assert str(many.value) == (
        f"{tmp_path / 'wide.csv'}: missing column 'sample_id' "
        "(has c0, c1, c2, c3, c4, c5, c6, c7 … and 12 more)"
    )
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputFileError, match="empty.csv: file is empty"):
        check_file(tmp_path / "empty.csv")


def test_training_split_holds_out_a_grouped_stratified_seeded_test_part(manifest):
    splits = training_splits(manifest, seed=5, val_fraction=0.2, test_fraction=0.25)
    assert set(splits["split"]) == {"train", "val", "test"}
    assert check_leakage(splits).empty
    assert splits.equals(training_splits(manifest, seed=5, val_fraction=0.2,
                                         test_fraction=0.25))
    merged = manifest.assign(split=splits["split"])
    share = merged["split"].value_counts(normalize=True)
    assert abs(share["test"] - 0.25) < 0.06 and abs(share["val"] - 0.2) < 0.06
    assert abs(_ratio(merged[merged["split"] == "test"]) - _ratio(manifest)) < 0.05
    assert "test" not in set(training_splits(manifest, seed=5)["split"])  # default: none
    with pytest.raises(MedilabError, match="val_fraction \\+ data.test_fraction"):
        training_splits(manifest, seed=5, val_fraction=0.5, test_fraction=0.5)


def test_a_given_test_part_is_kept_and_one_without_gets_one_from_train(manifest):
    given = training_splits(manifest, seed=1, val_fraction=0.2, test_fraction=0.2)
    kept = training_splits(manifest, seed=9, test_fraction=0.4, given=given)
    assert kept["split"].tolist() == given["split"].tolist()
    no_test = given.assign(split=given["split"].replace({"test": "train"}))
    carved = training_splits(manifest, seed=9, test_fraction=0.2, given=no_test)
    assert (carved.loc[no_test["split"] == "val", "split"] == "val").all()
    assert set(carved["split"]) == {"train", "val", "test"}
    assert check_leakage(carved).empty
    assert abs((carved["split"] == "test").mean() - 0.2) < 0.06
