"""Seed ensembles: one member run per seed on one split, their ensemble in the run folder,
and a stopped seed ensemble continued by the same command."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from medilab import api, cli, run
from medilab.config import load_config
from medilab.errors import InputFileError, MedilabError
from medilab.runfolder import load_run_config


def _probs(folder, split="val"):
    frame = pd.read_csv(folder / f"predictions_{split}.csv", dtype={"sample_id": str})
    return frame.sort_values("sample_id").filter(like="prob_").to_numpy()


def test_seeds_train_members_an_ensemble_of_their_mean_and_continue_after_a_stop(
        digits_config, tmp_path, capsys):
    folder = tmp_path / "seeds"
    with pytest.raises(SystemExit) as done:
        cli.main(["train", str(digits_config), "--seeds", "2", "--run-dir", str(folder),
                  "-o", "trainer.max_epochs=1"])
    assert done.value.code == 0, capsys.readouterr().err
    members = [folder / "seed0", folder / "seed1"]
    assert json.loads((folder / "ensemble.json").read_text())["members"] == [
        str(m.resolve()) for m in members]
    assert [load_run_config(m).seed for m in members] == [0, 1]
    assert load_run_config(folder).trainer.seeds == [0, 1]
    splits = [pd.read_csv(m / "splits.csv") for m in (folder, *members)]
    assert all(s.equals(splits[0]) for s in splits)  # one split for every member
    assert (members[1] / "metrics.json").is_file() and (folder / "report.html").is_file()
    first = _probs(members[0])
    assert not np.allclose(first, _probs(members[1]), atol=1e-3)  # the seeds differ

    # as if killed while the second member trained: it and the ensemble are gone
    kept = (members[0] / "checkpoints" / "best.ckpt").stat().st_mtime_ns
    shutil.rmtree(members[1])
    (folder / "ensemble.json").unlink()
    (folder / "metrics.json").unlink()
    api.train(None, run_dir=folder, resume=True)
    assert (members[0] / "checkpoints" / "best.ckpt").stat().st_mtime_ns == kept
    assert (members[1] / "checkpoints" / "best.ckpt").is_file()
    # the ensemble's probabilities are the mean of its members' (as written, 6 decimals)
    np.testing.assert_allclose(_probs(folder), (first + _probs(members[1])) / 2, atol=2e-6)

    other = load_config(digits_config, ["trainer.seeds=[5, 6]"])
    with pytest.raises(InputFileError, match="seeds.json: this folder trains seeds \\[0, 1\\]"):
        api.train(other, run_dir=folder)
    changed = load_config(digits_config, ["trainer.seeds=[0, 1]", "trainer.max_epochs=3"])
    with pytest.raises(InputFileError, match="started with another trainer.max_epochs"):
        api.train(changed, run_dir=folder)
    with pytest.raises(MedilabError, match="trainer.seeds"):  # one run, not an ensemble
        run.train(other, run_dir=tmp_path / "plain")
    with pytest.raises(MedilabError, match="--seeds 1: .*two or more"):
        api.train(digits_config, run_dir=tmp_path / "one", seeds=1)
    assert not (tmp_path / "plain").exists() and not (tmp_path / "one").exists()
