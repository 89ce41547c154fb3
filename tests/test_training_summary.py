"""What a user reads while training off a terminal: a start banner, one line per epoch with
that epoch's own metrics (the last included), progress lines inside long epochs."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from medilab import api, training_summary


def test_epoch_lines_show_each_epochs_own_metrics(tmp_path, digits_config, capsys,
                                                  monkeypatch):
    monkeypatch.setattr(training_summary, "PROGRESS_EVERY_S", 0.0)  # a line per batch
    run = api.train(digits_config, ["trainer.max_epochs=3", "trainer.progress_bar=true"],
                    run_dir=tmp_path / "run")
    printed = capsys.readouterr().out
    assert re.search(r"training: \d+ train / \d+ val samples \(\d+ / \d+ batches per epoch\), "
                     r"3 epochs, device cpu, precision ", printed)
    assert "epoch 2/3: training batch 1/" in printed and "validation batch 1/" in printed
    assert "scoring: batch 1/" in printed  # evaluation says where it is too
    curves = pd.read_csv(run / "metrics.csv")
    epochs = [line for line in printed.splitlines() if re.match(r"epoch \d/3  ", line)]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"]
    for k, line in enumerate(epochs):
        shown = dict(re.findall(r"((?:train|val)/\w+) ([\d.]+)", line))
        assert {"train/loss", "train/accuracy", "val/loss", "val/accuracy"} <= set(shown)
        for name, value in shown.items():
            logged = curves.loc[curves["epoch"] == k, name].dropna()
            assert float(value) == pytest.approx(float(logged.iloc[-1]), abs=6e-5), (k, name)
