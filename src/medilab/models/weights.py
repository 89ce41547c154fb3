"""Pretrained weights, offline only: torchvision's weight files in the torch hub cache, or a
local file (``weights_path``). Nothing is ever downloaded; a missing file is a one-line
:class:`~medilab.errors.WeightsUnavailableError` naming where it was looked for."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torchvision.models import WeightsEnum

from medilab.errors import InputFileError, WeightsUnavailableError
from medilab.io.atomic import atomic_path


def hub_file(weights: WeightsEnum) -> Path:
    """Where torchvision keeps ``weights`` once downloaded: ``<hub dir>/checkpoints/<file>``."""
    return checkpoints_dir() / Path(weights.url).name


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth``/``.ckpt`` file (``torch.load(weights_only=True)``) or a
    ``.safetensors`` file; a Lightning checkpoint's ``state_dict`` is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise WeightsUnavailableError(
            f"{path}: not a readable weights file ({type(exc).__name__})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"{path}: expected a state dict of tensors")
    return state


def named_weights_file(weights: str | Path, names: tuple[str, ...]) -> Path:
    """``model.kwargs.weights`` that is not one of ``names``: an existing weights file, else a
    one-line error naming the field and the valid values (``imagnet`` is a typo, not a file)."""
    path = Path(weights)
    choices = f"{', '.join(names[:-1])} or {names[-1]}"
    if not path.is_file():
        if path.suffix or len(path.parts) > 1:  # meant as a file
            raise WeightsUnavailableError(f"model.kwargs.weights: {path}: weights file not "
                                          f"found (or use {choices})")
        raise WeightsUnavailableError(f"model.kwargs.weights: {str(weights)!r} is not "
                                      f"{choices}, nor a weights file")
    return path


def pretrained_state_dict(
    weights: WeightsEnum, weights_path: str | Path | None = None
) -> dict[str, torch.Tensor]:
    """The state dict of ``weights_path`` when given, else of ``weights`` from the hub cache."""
    if weights_path is not None:
        return read_state_dict(weights_path)
    cached = hub_file(weights)
    if not cached.is_file():
        raise WeightsUnavailableError(
            f"pretrained weights {weights} not available offline: {cached} is missing "
            "(copy the file there, set model.kwargs.weights_path, or use pretrained: false)"
        )
    return read_state_dict(cached)


# ---------------------------------------------------------------------------------------------
# Named weight files: "imagenet" for medilab's backbones, import into the cache, listing

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.")  # torch.hub's convention: resnet50-11ad3fa6.pth


def _known_weights() -> dict[str, WeightsEnum]:
    """torchvision weights that medilab models load with ``weights: imagenet``."""
    from torchvision.models import (
        ResNet18_Weights,
        ResNet34_Weights,
        ResNet50_Weights,
        VGG16_BN_Weights,
        VGG16_Weights,
    )

    return {
        "vgg16": VGG16_Weights.IMAGENET1K_V1,
        "vgg16_bn": VGG16_BN_Weights.IMAGENET1K_V1,
        "resnet18": ResNet18_Weights.IMAGENET1K_V1,
        "resnet34": ResNet34_Weights.IMAGENET1K_V1,
        "resnet50": ResNet50_Weights.IMAGENET1K_V2,
    }


def checkpoints_dir() -> Path:
    """The torch hub cache of weight files: ``<torch.hub.get_dir()>/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def torchvision_state_dict(weights: WeightsEnum) -> dict[str, torch.Tensor]:
    """The state dict of torchvision ``weights`` from the hub cache, or a one-line
    ``WeightsUnavailableError`` naming the expected file and how to import it."""
    cached = hub_file(weights)
    if not cached.is_file():
        raise WeightsUnavailableError(
            f"pretrained weights {weights} not available offline: {cached} is missing "
            f"(get {cached.name} and run `medilab weights import FILE`, set model.kwargs.weights "
            "to a file path, or use weights: none)"
        )
    return read_state_dict(cached)


def timm_weights_file(model_name: str) -> Path:
    """A cached pretrained file for timm model ``model_name`` (``swin_tiny_patch4_window7_224``
    or ``name.tag``): the Hugging Face hub cache (``model.safetensors`` / ``pytorch_model.bin``)
    or the torch hub cache (the file name of its URL). Never downloads."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None:
        raise WeightsUnavailableError(f"timm model {model_name!r} has no pretrained weights")
    looked_at: list[str] = []
    if cfg.hf_hub_id:
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else []
        for filename in names or ["model.safetensors", "pytorch_model.bin"]:
            found = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str):
                return Path(found)
            looked_at.append(f"{hf_cache_path(cfg.hf_hub_id, filename)}/*/{filename}")
    if cfg.url:
        cached = checkpoints_dir() / Path(cfg.url).name
        if cached.is_file():
            return cached
        looked_at.append(str(cached))
    for imported in timm_import_paths(model_name):
        if imported.is_file():
            return imported
    looked_at.append(str(timm_import_paths(model_name)[0]))
    raise WeightsUnavailableError(
        f"pretrained weights for timm model {model_name!r} not available offline: "
        f"looked for {' and '.join(looked_at)} (get the model's model.safetensors and run "
        f"`medilab weights import FILE --model {model_name.split('.')[0]}`, set "
        "model.kwargs.weights to a file path, or use weights: none)"
    )


TIMM_SUFFIXES = (".safetensors", ".pth", ".bin")
SWIN_DEFAULT = "swin_tiny_patch4_window7_224"  # the `swin` model's variant, and `--model swin`


def timm_import_paths(model_name: str) -> list[Path]:
    """Where ``medilab weights import FILE --model NAME`` puts a timm model's weights:
    ``<hub checkpoints>/timm/<name>.safetensors`` (or ``.pth`` / ``.bin``)."""
    return [checkpoints_dir() / "timm" / f"{model_name.split('.')[0]}{suffix}"
            for suffix in TIMM_SUFFIXES]


def hf_cache_path(repo_id: str, filename: str) -> Path:
    """The folder of a Hugging Face hub file in the local cache (its snapshots hold it)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"


def import_weights(path: str | Path, model: str | None = None) -> Path:
    """Copy a torchvision weights file (named ``<name>-<sha256 prefix>.pth``, as torch.hub checks
    it) into the torch hub cache after checking its hash; return where it now lies. With
    ``model`` (a timm model name, or ``swin`` for medilab's default Swin), the file is a timm
    checkpoint (e.g. the model's ``model.safetensors``): checked to be a readable state dict
    and placed where ``weights: imagenet`` of that model looks."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "weights file not found")
    if model is not None:
        return _import_timm(path, model)
    match = _HASH_IN_NAME.search(path.name)
    if match is None:
        raise InputFileError(
            path, "name carries no -<sha256 prefix> (expected e.g. resnet50-11ad3fa6.pth)"
        )
    digest = sha256_of(path)
    if not digest.startswith(match.group(1)):
        raise InputFileError(
            path, f"sha256 {digest[: len(match.group(1))]}… does not match the name's "
            f"{match.group(1)} (incomplete or renamed download?)"
        )
    target = checkpoints_dir() / path.name
    if target.is_file() and sha256_of(target) == digest:
        return target
    with atomic_path(target) as tmp:
        shutil.copyfile(path, tmp)
    return target


def _import_timm(path: Path, model: str) -> Path:
    import timm

    name = SWIN_DEFAULT if model == "swin" else model
    if timm.models.get_pretrained_cfg(name.split(".")[0]) is None and not timm.is_model(name):
        raise InputFileError(path, f"--model {model!r}: not a timm model name (e.g. swin, "
                             f"{SWIN_DEFAULT})")
    if path.suffix not in TIMM_SUFFIXES:
        raise InputFileError(path, f"expected a {' / '.join(TIMM_SUFFIXES)} weights file")
    read_state_dict(path)  # a readable state dict of tensors, or a one-line error
    target = checkpoints_dir() / "timm" / f"{name.split('.')[0]}{path.suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        shutil.copyfile(path, tmp)
    return target


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _detector_weights() -> dict[str, WeightsEnum]:
    """torchvision COCO weights the Faster R-CNN builders load with ``weights: coco``."""
    from torchvision.models.detection import (
        FasterRCNN_MobileNet_V3_Large_FPN_Weights,
        FasterRCNN_ResNet50_FPN_V2_Weights,
    )

    return {"fasterrcnn_mobilenet_v3_large_fpn": FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
            "fasterrcnn_resnet50_fpn_v2": FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1}


def _swin_row() -> dict[str, Any]:
    """The default Swin's pretrained file: where it was found, or where to import it."""
    try:
        path, available = timm_weights_file(SWIN_DEFAULT), True
    except WeightsUnavailableError:
        path, available = timm_import_paths(SWIN_DEFAULT)[0], False
    return {"model": "swin", "weights": f"timm {SWIN_DEFAULT} (weights: imagenet)",
            "file": path.name, "path": str(path), "available": available}


def list_weights() -> list[dict[str, Any]]:
    """The pretrained weights medilab models know (``model``, ``weights``, ``file``, ``path``,
    ``available``): torchvision ImageNet backbones, the Faster R-CNN COCO detectors, the
    default Swin (timm); then any other file in the torch hub cache (``model`` None)."""
    folder = checkpoints_dir()
    rows: list[dict[str, Any]] = []
    for model, weights in {**_known_weights(), **_detector_weights()}.items():
        path = hub_file(weights)
        rows.append(
            {
                "model": model,
                "weights": str(weights),
                "file": path.name,
                "path": str(path),
                "available": path.is_file(),
            }
        )
    rows.append(_swin_row())
    known = {row["file"] for row in rows}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith(".") and path.name not in known:
                rows.append(
                    {"model": None, "weights": None, "file": path.name, "path": str(path),
                     "available": True}
                )
    return rows
