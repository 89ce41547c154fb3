"""Random elastic deformation: identity at zero, smooth shifts of the asked size, exact maps."""

import torch

from medilab.config import AugmentConfig
from medilab.data.transforms.augment import build_image_augmentation
from medilab.data.transforms.elastic import RandomElastic
from medilab.data.transforms.segmentation_augment import SegmentationAugment


def _ramp(size: int) -> torch.Tensor:
    """Image whose value is the column index: a warp's x shift is output minus input."""
    return torch.arange(size, dtype=torch.float32).repeat(size, 1)[None]


def test_zero_magnitude_is_identity():
    image = torch.randn(2, 40, 50)
    mask = torch.randint(0, 3, (1, 40, 50))
    warped, warped_mask = RandomElastic(0.0, 16)(image, mask)
    assert torch.allclose(warped, image, atol=1e-4)
    assert torch.equal(warped_mask, mask) and warped_mask.dtype == mask.dtype


def test_shifts_are_smooth_and_about_the_asked_size():
    torch.manual_seed(0)
    ramp = _ramp(128)
    shifts = []
    for _ in range(20):
        shift = (RandomElastic(5.0, 32)(ramp) - ramp)[0, 20:-20, 20:-20]  # away from the border
        shifts.append(shift)
        # neighbouring pixels move almost together: no tearing
        assert (shift[:, 1:] - shift[:, :-1]).abs().max() < 1.5
    spread = torch.stack(shifts).std().item()
    assert 2.5 < spread < 7.5


def test_label_maps_keep_their_values_and_follow_the_image():
    torch.manual_seed(1)
    mask = torch.zeros(1, 64, 64, dtype=torch.long)
    mask[:, 16:48, 20:44] = 2
    image = mask.float()
    warped, warped_mask = RandomElastic(4.0, 16)(image, mask)
    assert set(warped_mask.unique().tolist()) <= {0, 2}
    assert not torch.equal(warped_mask, mask)
    clear = (warped - 0).abs().le(0.01) | (warped - 2).abs().le(0.01)  # away from edges
    assert torch.equal(warped[clear].round().long(), warped_mask[clear])


def test_3d_volume():
    torch.manual_seed(2)
    volume = torch.randn(1, 12, 20, 24)
    out = RandomElastic(2.0, 8)(volume)
    assert out.shape == volume.shape and not torch.allclose(out, volume)


def test_augment_config_turns_it_on_for_both_pipelines():
    config = AugmentConfig(elastic_magnitude=3.0, elastic_spacing=16)
    torch.manual_seed(3)
    image, mask, valid = torch.randn(1, 32, 32), torch.ones(32, 32, dtype=torch.long), \
        torch.ones(32, 32)
    out_image, out_mask, out_valid = SegmentationAugment(config)(image, mask, valid)
    assert out_mask.shape == (32, 32) and not torch.allclose(out_image, image)
    assert set(out_valid.unique().tolist()) <= {0.0, 1.0}
    classification = build_image_augmentation(config)
    assert any(isinstance(step, RandomElastic) for step in classification.transforms)
    assert build_image_augmentation(AugmentConfig()) is None
