"""Shared by the tune tests: the tiny digits config with a held-out test part and a 2-key
search space file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

SPACE = "optimizer.lr: {loguniform: [1.0e-3, 1.0e-1]}\nmodel.kwargs.dropout: {uniform: [0, 0.5]}\n"


@pytest.fixture
def make_tune_config(tmp_path: Path, digits_config: Path) -> Callable[..., tuple[Path, Path]]:
    """``make(**trainer)`` (trainer keys to set, e.g. ``max_epochs=1``; ``bootstrap_samples``
    goes to evaluation) → (config, space): the digits config with ``test_fraction`` 0.2 and no
    early stopping, and the space file."""

    def make(bootstrap_samples: int | None = None, **trainer: Any) -> tuple[Path, Path]:
        raw = yaml.safe_load(digits_config.read_text())
        raw["data"]["test_fraction"] = 0.2
        raw["trainer"].update(trainer, early_stopping={"enabled": False})
        if bootstrap_samples is not None:
            raw["evaluation"]["bootstrap_samples"] = bootstrap_samples
        config = tmp_path / "tune_digits.yaml"
        config.write_text(yaml.safe_dump(raw), encoding="utf-8")
        space = tmp_path / "space.yaml"
        space.write_text(SPACE, encoding="utf-8")
        return config, space

    return make
