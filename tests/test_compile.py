"""trainer.compile: the network is compiled in place for training; checkpoints keep their keys
and evaluate in an uncompiled model."""

from __future__ import annotations

import shutil

import pytest

from medilab import api
from medilab.config import load_config
from medilab.run import compile_network
from medilab.tasks.registry import get_task_family
from medilab.trained import read_checkpoint_state

needs_compiler = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None,
    reason="torch.compile (inductor) needs a C compiler on CPU")


def test_compile_is_off_by_default(digits_config):
    assert load_config(digits_config).trainer.compile is False


def test_compiled_network_keeps_its_state_dict_keys(digits_config):
    config = load_config(digits_config, ["trainer.compile=true"])
    family = get_task_family(config.task)
    module = family.build_module(config, {"in_channels": 1, "image_size": [8, 8],
                                          "num_classes": 10}, for_training=True)
    before = list(module.state_dict())
    compile_network(module)
    assert list(module.state_dict()) == before
    assert not any("_orig_mod" in key for key in before)


@needs_compiler
def test_one_epoch_with_compile_trains_and_its_checkpoint_evaluates(tmp_path, digits_config,
                                                                     one_torch_thread):
    run_dir = api.train(digits_config, ["trainer.compile=true", "trainer.max_epochs=1",
                                        "trainer.limit_train_batches=3",
                                        "trainer.limit_val_batches=1"],
                        run_dir=tmp_path / "run", evaluate_after=False)
    state = read_checkpoint_state(run_dir / "checkpoints" / "best.ckpt")
    assert state and not any("_orig_mod" in key for key in state)
    metrics = api.evaluate(run_dir)
    assert metrics["checkpoint"] == "best"
    assert 0.0 <= metrics["splits"]["val"]["accuracy"]["value"] <= 1.0
