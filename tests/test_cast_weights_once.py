"""Mixed-precision prediction casts the weights once per ``predict`` (not once per batch), with
the same outputs, and leaves no autocast state behind (also when a step fails)."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from medilab.config import validate_config
from medilab.run import CastWeightsOnce, build_inference_trainer
from medilab.tasks.classification import ClassificationFamily

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WEIGHT_SHAPE = [4, 1, 3, 3]  # the first conv's weight


def _config(precision: str):
    return validate_config({"data": {"source": "sklearn_digits"},
                            "model": {"name": "convnet", "kwargs": {"widths": [4], "convs": 1}},
                            "trainer": {"precision": precision, "progress_bar": False}})


def _module(config):
    torch.manual_seed(0)
    args = {"in_channels": 1, "num_classes": 3, "image_size": [8, 8], "class_names": list("abc"),
            "widths": [4], "convs": 1}
    return ClassificationFamily().build_module(config, args, for_training=False).eval()


def _loader(batches: int = 3):
    images = torch.randn(2 * batches, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    samples = [{"image": image, "label": torch.tensor(0)} for image in images]
    return torch.utils.data.DataLoader(samples, batch_size=2)


def _predict(trainer, module):
    """(probabilities, casts of the first conv's weight) of one predict call."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        outputs = trainer.predict(module, dataloaders=_loader())
    casts = sum(1 for e in prof.events()
                if e.name == "aten::_to_copy" and e.input_shapes and
                list(e.input_shapes[0]) == WEIGHT_SHAPE)
    return torch.cat(outputs), casts


def test_bf16_prediction_casts_each_weight_once_with_the_same_outputs():
    config = _config("bf16-mixed")
    module = _module(config)
    trainer = build_inference_trainer(config)
    assert any(isinstance(c, CastWeightsOnce) for c in trainer.callbacks)
    once, casts_once = _predict(trainer, module)
    per_batch = build_inference_trainer(config)
    per_batch.callbacks = [c for c in per_batch.callbacks if not isinstance(c, CastWeightsOnce)]
    reference, casts_per_batch = _predict(per_batch, module)
    assert (casts_once, casts_per_batch) == (1, 3)  # three batches
    assert torch.equal(once, reference)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = torch.softmax(module.model(torch.cat([b["image"] for b in _loader()])).float(),
                              dim=1)
    torch.testing.assert_close(once, plain, rtol=0, atol=1e-6)


def test_no_stale_casts_after_predict_and_none_in_fp32():
    config = _config("bf16-mixed")
    module = _module(config)
    trainer = build_inference_trainer(config)
    first, _ = _predict(trainer, module)
    with torch.no_grad():
        for param in module.parameters():
            param.mul_(-1.0)  # new weights: a kept cache would predict with the old ones
    second, casts = _predict(trainer, module)
    assert casts == 1 and not torch.allclose(first, second)
    assert not any(isinstance(c, CastWeightsOnce)
                   for c in build_inference_trainer(_config("32-true")).callbacks)


def test_a_failing_step_leaves_no_autocast_region_open():
    config = _config("bf16-mixed")
    module = _module(config)

    def broken(batch, batch_idx):
        raise RuntimeError("boom")

    module.predict_step = broken
    with pytest.raises(RuntimeError, match="boom"):
        build_inference_trainer(config).predict(module, dataloaders=_loader())
    level = torch.autocast_increment_nesting()
    torch.autocast_decrement_nesting()
    assert level == 1  # nothing left nested
