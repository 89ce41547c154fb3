"""Segmentation augmentation (MONAI dictionary transforms): image, mask and valid map move
together in 2D and 3D, masks keep their values, soft labels, seeded draws."""

import pytest
import torch

from medilab.config import AugmentConfig
from medilab.data.datamodules.segmentation import PatchDataset
from medilab.data.transforms.segmentation_augment import SegmentationAugment
from segmentation_samples import bar_sample


def _labelled(shape: tuple[int, ...], classes: int = 3) -> tuple[torch.Tensor, ...]:
    """An image whose pixel value is its class (blocks of 0..classes-1), a valid map with a
    hole, so any misalignment between the three shows."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.randint(0, classes, tuple(max(2, s // 8) for s in shape), generator=generator)
    mask = torch.nn.functional.interpolate(coarse[None, None].float(), size=shape,
                                           mode="nearest")[0, 0].long()
    valid = torch.ones(shape)
    valid[(slice(None),) * (len(shape) - 2) + (slice(0, shape[-2] // 3), slice(None))] = 0
    return mask[None].float(), mask, valid


EVERYTHING = AugmentConfig(hflip=True, vflip=True, rot90=True, rotate_degrees=25,
                           translate=0.1, scale=0.15, elastic_magnitude=1.5, elastic_spacing=8)


@pytest.mark.parametrize("shape", [(24, 24), (20, 28), (8, 16, 16)])
def test_image_mask_and_valid_map_stay_aligned(shape):
    image, mask, valid = _labelled(shape)
    augment = SegmentationAugment(EVERYTHING, spatial_dims=len(shape), num_classes=3)
    torch.manual_seed(0)
    changed = 0
    for _ in range(6):
        out_image, out_mask, out_valid = augment(image, mask, valid * (mask > -1))
        assert out_image.shape == image.shape and out_mask.shape == shape
        assert out_mask.dtype == torch.int64 and set(out_mask.unique().tolist()) <= {0, 1, 2}
        assert set(out_valid.unique().tolist()) <= {0.0, 1.0}
        # the image was interpolated bilinearly, the mask nearest-neighbour: where the image
        # lands exactly on a class value (inside a block, or zeros from outside), that value
        # is the mask's class
        exact = (out_image[0] - out_image[0].round()).abs() < 1e-4
        assert exact.float().mean() > 0.3
        assert torch.equal(out_image[0][exact].round().long(), out_mask[exact])
        changed += int(not torch.equal(out_mask, mask))
    assert changed >= 5
    # the valid map's hole moved with the image: no pixel drawn wholly from the hole is valid
    image_in_hole = torch.full_like(image, 7.0) * (1 - valid)
    for _ in range(3):
        out_image, _, out_valid = augment(image_in_hole, mask, valid)
        from_hole = out_image[0] > 7 - 1e-4
        assert from_hole.any() and not out_valid[from_hole].any()


def test_draws_follow_torch_seed():
    image, mask, valid = _labelled((16, 16))
    augment = SegmentationAugment(EVERYTHING.model_copy(update={"brightness": 0.2}))
    torch.manual_seed(3)
    first = augment(image, mask, valid)
    torch.manual_seed(3)
    again = augment(image, mask, valid)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    different = augment(image, mask, valid)
    assert not torch.equal(first[0], different[0])


def test_patch_dataset_applies_the_augmentation_with_nearest_masks():
    torch.manual_seed(2)
    augment = SegmentationAugment(AugmentConfig(rotate_degrees=30, hflip=True))
    dataset = PatchDataset([bar_sample((16, 16))], [12, 12], patches_per_image=4, augment=augment)
    for k in range(4):
        item = dataset[k]
        assert item["mask"].shape == (12, 12) and item["mask"].dtype == torch.int64
        # the image is ±1 by class: nearest-neighbour mask and bilinear image agree away from
        # edges
        sure = item["image"][0].abs() > 0.999
        assert torch.equal((item["image"][0][sure] > 0).long(), item["mask"][sure])


def test_flips_and_rot90_move_image_and_mask_together():
    torch.manual_seed(1)
    augment = SegmentationAugment(AugmentConfig(hflip=True, vflip=True, rot90=True))
    base = bar_sample((8, 8))
    seen = set()
    for _ in range(12):
        image, mask, valid = augment(torch.from_numpy(base.image), torch.from_numpy(base.mask),
                                     torch.from_numpy(base.valid))
        assert torch.equal(image[0] > 0, mask.bool())
        seen.add(tuple(mask.flatten().tolist()))
    assert len(seen) > 2  # the transforms really vary
    affine = SegmentationAugment(AugmentConfig(rotate_degrees=30, scale=0.2, brightness=0.5))
    image, mask, valid = affine(torch.from_numpy(base.image), torch.from_numpy(base.mask),
                                torch.from_numpy(base.valid))
    assert set(mask.unique().tolist()) <= {0, 1} and mask.dtype == torch.int64
    assert set(valid.unique().tolist()) <= {0.0, 1.0}


def test_soft_labels_resample_the_one_hot_mask_with_the_image():
    torch.manual_seed(4)
    image = torch.zeros(1, 16, 16)
    image[:, :, 8:] = 1.0
    mask = (image[0] > 0.5).long()
    valid = torch.ones(16, 16)
    hard = SegmentationAugment(AugmentConfig(hflip=True, rotate_degrees=20))
    soft = SegmentationAugment(AugmentConfig(hflip=True, rotate_degrees=20, soft_labels=True),
                        num_classes=3)
    _, hard_mask, _ = hard(image, mask, valid)
    assert hard_mask.dtype == torch.int64
    torch.manual_seed(5)
    out_image, out_mask, out_valid = soft(image, mask, valid)
    assert out_mask.shape == (3, 16, 16) and out_mask.is_floating_point()
    inside = out_valid.bool()
    assert torch.allclose(out_mask.sum(0)[inside], torch.ones(int(inside.sum())))
    assert torch.all(out_mask[2] == 0)  # an absent class stays absent
    # away from the corners rotated in from outside, the class-1 share is the interpolated
    # image exactly, fractions on the edge included
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    centre = (yy - 7.5) ** 2 + (xx - 7.5) ** 2 < 36
    assert torch.allclose(out_mask[1][centre], out_image[0][centre], atol=1e-5)
    fractional = (out_mask[1] > 0.05) & (out_mask[1] < 0.95) & centre
    assert fractional.any()  # a rotated edge falls between pixels
    flips_only = SegmentationAugment(AugmentConfig(hflip=True, soft_labels=True))
    _, onehot, _ = flips_only(image, mask, valid)
    assert set(onehot.unique().tolist()) == {0.0, 1.0}


def test_soft_labels_through_elastic_deformation():
    torch.manual_seed(6)
    image = torch.rand(1, 32, 32)
    mask = (image[0] > 0.5).long()
    config = AugmentConfig(elastic_magnitude=2.0, elastic_spacing=8, soft_labels=True)
    out_image, out_mask, out_valid = SegmentationAugment(config)(image, mask, torch.ones(32, 32))
    assert out_mask.shape == (2, 32, 32)
    inside = out_valid.bool()
    assert torch.allclose(out_mask.sum(0)[inside], torch.ones(int(inside.sum())), atol=1e-5)
    assert not torch.equal(out_image, image)
