"""A family checks a source's ``data:`` section against its protocol, never a concrete class."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from medilab.errors import ConfigError
from medilab.tasks.contract import protocol_members, require
from medilab.tasks.segmentation_contract import SegmentationInputs


def test_segmentation_contract_lists_data_members_but_not_inference_options():
    members = protocol_members(SegmentationInputs)
    for name in ("root", "channels", "spatial_dims", "num_classes", "patch_size", "augment",
                 "mask_inverted", "key", "uses_field_of_view"):
        assert name in members
    for name in ("roi_size", "overlap", "mirror_tta"):  # the family's own inference: section
        assert name not in members


def test_a_section_without_a_member_is_refused_naming_it():
    complete = SimpleNamespace(**dict.fromkeys(protocol_members(SegmentationInputs), None),
                               source="my_masks")
    assert require(complete, SegmentationInputs, "segmentation") is complete
    del complete.patch_size, complete.mask_inverted
    with pytest.raises(ConfigError, match="data.source 'my_masks' cannot feed the segmentation "
                       "task: its config has no mask_inverted, patch_size"):
        require(complete, SegmentationInputs, "segmentation")
