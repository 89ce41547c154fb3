"""Offline weight files: reading, the hub cache, importing with the name's hash, listing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import ResNet50_Weights, VGG16_Weights

from medilab.errors import InputFileError, WeightsUnavailableError
from medilab.models.weights import (
    checkpoints_dir,
    hub_file,
    import_weights,
    list_weights,
    read_state_dict,
    sha256_of,
    torchvision_state_dict,
)


@pytest.fixture(autouse=True)
def torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def fake_weights(folder: Path, stem: str, seed: int = 0, digits: int = 8) -> Path:
    """A small state dict saved as ``<stem>-<its sha256 prefix>.pth``, as torchvision names."""
    torch.manual_seed(seed)
    draft = folder / f"{stem}.tmp"
    torch.save({"conv1.weight": torch.randn(4, 3, 3, 3)}, draft)
    digest = hashlib.sha256(draft.read_bytes()).hexdigest()
    return draft.rename(folder / f"{stem}-{digest[:digits]}.pth")


def test_cache_folder_follows_torch_home(torch_home):
    assert checkpoints_dir() == torch_home / "hub" / "checkpoints"
    assert hub_file(ResNet50_Weights.IMAGENET1K_V2) == checkpoints_dir() / "resnet50-11ad3fa6.pth"


def test_sha256_of_reads_the_whole_file(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"x" * (3 << 20))
    assert sha256_of(path) == hashlib.sha256(b"x" * (3 << 20)).hexdigest()


def test_import_accepts_a_file_whose_hash_matches_its_name(tmp_path, torch_home):
    source = fake_weights(tmp_path, "resnet50", digits=10)
    target = import_weights(source)
    assert target == torch_home / "hub" / "checkpoints" / source.name
    assert target.read_bytes() == source.read_bytes()
    assert import_weights(source) == target  # again: nothing to do
    original = torch.load(source, weights_only=True)["conv1.weight"]
    assert torch.equal(read_state_dict(target)["conv1.weight"], original)
    assert [p.name for p in target.parent.iterdir()] == [source.name]  # no temporary left


def test_import_refuses_a_file_whose_hash_does_not_match(tmp_path):
    genuine = fake_weights(tmp_path, "vgg16")
    renamed = genuine.rename(tmp_path / "vgg16-397923af.pth")
    with pytest.raises(InputFileError) as info:
        import_weights(renamed)
    message = str(info.value)
    assert "\n" not in message and str(renamed) in message and "397923af" in message
    assert not checkpoints_dir().exists() or not any(checkpoints_dir().iterdir())


def test_import_refuses_names_without_a_hash_and_missing_files(tmp_path):
    plain = tmp_path / "weights.pth"
    torch.save({}, plain)
    with pytest.raises(InputFileError, match="no -<sha256 prefix>"):
        import_weights(plain)
    with pytest.raises(InputFileError, match="not found"):
        import_weights(tmp_path / "resnet50-11ad3fa6.pth")


def test_list_weights_shows_known_files_and_imported_ones(tmp_path):
    rows = {row["file"]: row for row in list_weights()}
    assert rows["resnet50-11ad3fa6.pth"]["model"] == "resnet50"
    assert rows["resnet50-11ad3fa6.pth"]["weights"] == "ResNet50_Weights.IMAGENET1K_V2"
    assert not any(row["available"] for row in rows.values())

    imported = import_weights(fake_weights(tmp_path, "mynet"))
    cached = hub_file(VGG16_Weights.IMAGENET1K_V1)
    cached.write_bytes(b"not checked here")
    rows = {row["file"]: row for row in list_weights()}
    assert rows[imported.name] == {
        "model": None, "weights": None, "file": imported.name, "path": str(imported),
        "available": True,
    }
    assert rows["vgg16-397923af.pth"]["available"] is True
    assert rows["vgg16-397923af.pth"]["path"] == str(cached)
    assert rows["resnet50-11ad3fa6.pth"]["available"] is False


def test_torchvision_state_dict_names_the_missing_file(torch_home):
    with pytest.raises(WeightsUnavailableError) as info:
        torchvision_state_dict(ResNet50_Weights.IMAGENET1K_V2)
    message = str(info.value)
    assert "\n" not in message
    assert str(torch_home / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth") in message
    assert "medilab weights import FILE" in message


def test_read_state_dict_reads_safetensors_and_refuses_other_files(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.arange(3.0)}, str(path))
    assert read_state_dict(path)["w"].tolist() == [0.0, 1.0, 2.0]
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"nonsense")
    with pytest.raises(WeightsUnavailableError, match="not a readable weights file"):
        read_state_dict(broken)


def test_a_misspelled_weights_name_names_the_field_and_values():
    from medilab.models import create_model

    with pytest.raises(WeightsUnavailableError, match=r"model.kwargs.weights: 'imagnet' is not "
                                                      r"none or imagenet, nor a weights file"):
        create_model("resnet18", in_channels=1, num_classes=2, weights="imagnet")
    with pytest.raises(WeightsUnavailableError, match=r"'cocoa' is not none or coco"):
        create_model("fasterrcnn_small", weights="cocoa")


def test_detection_coco_weights_say_how_to_import_them(torch_home):
    from medilab.models import create_model

    with pytest.raises(WeightsUnavailableError) as info:
        create_model("fasterrcnn_mobilenet_v3_large_fpn", weights="coco")
    message = str(info.value)
    assert "medilab weights import FILE" in message and "weights: none" in message
    assert "weights_path" not in message and "pretrained" not in message.split("available")[1]
    rows = {row["model"]: row for row in list_weights()}
    assert rows["fasterrcnn_mobilenet_v3_large_fpn"]["path"] in message


def test_swin_weights_are_listed_imported_and_found(tmp_path, torch_home, monkeypatch):
    from huggingface_hub import constants

    from medilab.models.backbones import SWIN_DEFAULT
    from medilab.models.weights import timm_weights_file

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # none cached here
    swin = next(row for row in list_weights() if row["model"] == "swin")
    assert not swin["available"] and swin["path"].endswith(f"{SWIN_DEFAULT}.safetensors")
    with pytest.raises(WeightsUnavailableError, match=r"medilab weights import FILE --model "
                                                      rf"{SWIN_DEFAULT}"):
        timm_weights_file(SWIN_DEFAULT)
    file = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(file))
    placed = import_weights(file, "swin")
    assert str(placed) == swin["path"] and timm_weights_file(SWIN_DEFAULT) == placed
    assert next(row for row in list_weights() if row["model"] == "swin")["available"]
    with pytest.raises(InputFileError, match="not a timm model"):
        import_weights(file, "no_such_net")
