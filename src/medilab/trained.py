"""Rebuild a trained module from a run folder: one run's checkpoint, or an ensemble's members."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from medilab.config import ExperimentConfig
from medilab.errors import InputFileError
from medilab.models.calibration import with_temperature
from medilab.models.ensemble import MeanProbabilityEnsemble
from medilab.runfolder import (
    ENSEMBLE_FILE,
    checkpoint_path,
    load_run_config,
    read_fitted,
    read_model_args,
)
from medilab.tasks.base import BaseModule, TaskFamily


def read_checkpoint_state(path: Path) -> dict:
    """A Lightning checkpoint's ``state_dict``, loaded with ``weights_only=True`` (a file that
    carries pickled code is refused, never run)."""
    if not path.is_file():
        raise InputFileError(path, "checkpoint not found (did training finish an epoch?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise InputFileError(path, f"not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict):
        raise InputFileError(path, "not a Lightning checkpoint (no state_dict)")
    return state["state_dict"]


def load_module(
    run_dir: Path, family: TaskFamily, config: ExperimentConfig, checkpoint: str = "best",
    fitted: bool = True,
) -> BaseModule:
    """The run's module rebuilt from its saved model arguments with the checkpoint's weights
    (for an ensemble folder: the first member's module averaging every member's model, each
    member as it was evaluated). With ``fitted`` what evaluation fitted on val for this
    checkpoint (``fitted.json``: temperature, threshold, fusion weights) is put back, so the
    module predicts as evaluation scored it; evaluation itself loads with ``fitted=False``."""
    if (run_dir / ENSEMBLE_FILE).is_file():
        module = _load_ensemble(run_dir, family, config)
    else:
        module = family.build_module(config, read_model_args(run_dir), for_training=False)
        module.load_state_dict(read_checkpoint_state(checkpoint_path(run_dir, checkpoint)))
    state = read_fitted(run_dir, checkpoint) if fitted else None
    if state is not None:
        family.apply_fitted(module, state)
    module.eval()
    return module


def _load_ensemble(run_dir: Path, family: TaskFamily, config: ExperimentConfig) -> BaseModule:
    """Inference settings come from the ensemble's config; models from its members."""
    path = run_dir / ENSEMBLE_FILE
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        members, checkpoint = spec["members"], spec["checkpoint"]
    except (ValueError, KeyError, TypeError):
        raise InputFileError(path, "not an ensemble.json written by medilab") from None
    modules = [
        load_module(Path(m), family, load_run_config(Path(m)), checkpoint) for m in members
    ]
    module = modules[0]
    module.config = config
    # each member calibrated as its own evaluation fitted it; the ensemble's own temperature
    # and threshold (fitted when the ensemble is evaluated) apply on top
    module.model = MeanProbabilityEnsemble(
        [with_temperature(m.model, float(getattr(m, "temperature", 1.0))) for m in modules])
    for name, default in (("temperature", 1.0), ("threshold", None), ("covariate_fusion", None)):
        if hasattr(module, name):
            setattr(module, name, default)
    module.eval()
    return module
