"""The model and training facts of a card, each read from the run folder's files: what the
model is, how it was initialised, what it takes as input, how and where it was trained, and
what evaluation fitted on val."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from medilab.reports.card.runinfo import RunInfo
from medilab.reports.html import format_number
from medilab.runfolder import checkpoint_path

NOT_RECORDED = "not recorded in the run folder"
HIDDEN_KWARGS = ("class_names",)
STOP_WORDS = {"max_epochs": "reached max_epochs", "early_stopping": "early stopping"}


def parameter_count(run_dir: Path) -> str:
    """Floating-point parameters and buffers of the model in ``checkpoints/best.ckpt``, as
    text (why not, when the checkpoint is missing or unreadable)."""
    path = checkpoint_path(run_dir, "best")
    if not path.is_file():
        return f"{NOT_RECORDED} (no checkpoints/best.ckpt)"
    from medilab.errors import InputFileError
    from medilab.trained import read_checkpoint_state

    try:
        state = read_checkpoint_state(path)
    except InputFileError as exc:
        return f"unknown: {exc}"
    count = sum(v.numel() for k, v in state.items()
                if k.startswith("model.") and v.is_floating_point())
    return f"{count:,}"


def weights_text(kwargs: dict[str, Any]) -> str:
    """How the network's weights started: random, a named pretrained set, or a file + sha256."""
    weights = kwargs.get("weights")
    path = kwargs.get("weights_path")
    if path:
        return _file_text(Path(str(path)))
    if weights in (None, "none", False) and not kwargs.get("pretrained"):
        return "random initialisation (no pretrained weights)"
    if isinstance(weights, str) and weights not in ("imagenet", "none") and Path(weights).suffix:
        return _file_text(Path(weights))
    named = weights if isinstance(weights, str) and weights != "none" else "pretrained"
    return f"{named} pretrained weights (torchvision / timm file, loaded offline)"


def _file_text(path: Path) -> str:
    if not path.is_file():
        return f"weights file {path.name} (not found now: hash unknown)"
    from medilab.models.weights import sha256_of

    return f"weights file {path.name}, sha256 {sha256_of(path)}"


def is_random_init(info: RunInfo) -> bool:
    """Whether the run's network started from random weights."""
    kwargs = info.get("model.kwargs") or {}
    return weights_text(kwargs).startswith("random")


def model_facts(info: RunInfo) -> list[tuple[str, str]]:
    """Task, architecture, parameters, weights, input, precision, hardware, time, versions,
    config hash and seed."""
    saved = info.model_json.get("kwargs") or {}
    kwargs = {k: v for k, v in saved.items() if k not in HIDDEN_KWARGS}
    members = info.ensemble.get("members") or []
    rows = [("task", info.task)]
    if members:
        rows.append(("model", f"ensemble of {len(members)} runs (mean of their probabilities)"))
    else:
        name = info.model_json.get("name") or info.get("model.name") or "–"
        rows.append(("architecture", f"{name} ({_kwargs_text(kwargs)})"))
        rows.append(("parameters", parameter_count(info.run_dir)))
        rows.append(("initial weights", weights_text(info.get("model.kwargs") or {})))
    rows.append(("input", input_text(info, saved)))
    precision = info.status.get("precision") or {}
    if precision.get("precision"):
        rows.append(("precision", f"training {precision['precision']}, inference "
                                  f"{(precision.get('inference') or {}).get('precision', '–')}"))
    rows.append(("hardware", hardware_text(info)))
    training = info.status.get("training") or info.metrics.get("training") or {}
    seconds = training.get("fit_seconds")
    rows.append(("training time", f"{seconds:.0f} s" if isinstance(seconds, int | float)
                 else NOT_RECORDED))
    versions = (info.status.get("environment") or {}).get("versions") or {}
    rows.append(("software", ", ".join(f"{k} {v}" for k, v in versions.items())
                 or NOT_RECORDED))
    rows.append(("config sha256", info.config_sha256 or NOT_RECORDED))
    rows.append(("seed", str(info.get("seed", "–"))))
    return rows


def input_text(info: RunInfo, saved: dict[str, Any]) -> str:
    """Channels, size (or spacing) and the pixel preparation of the model's input."""
    parts = []
    if saved.get("in_channels") is not None:
        parts.append(f"{saved['in_channels']} channel(s)")
    size = saved.get("image_size") or saved.get("input_size")
    if size:
        parts.append("size " + "×".join(map(str, size if isinstance(size, list) else [size])))
    data = info.get("data") or {}
    for key in ("spacing", "target_spacing", "patch_size", "roi_size"):
        if data.get(key):
            parts.append(f"{key} {data[key]}")
    prep = data.get("prep")
    if isinstance(prep, dict):
        shown = {k: v for k, v in prep.items() if v not in (None, False, "none")}
        parts.append("preparation: " + (_kwargs_text(shown) if shown else "none"))
    if info.get("data.covariates"):
        parts.append("covariates: " + ", ".join(map(str, info.get("data.covariates"))))
    return "; ".join(parts) or NOT_RECORDED


def hardware_text(info: RunInfo) -> str:
    """The device the run trained on (status.json), else the configured accelerator."""
    env = info.status.get("environment") or {}
    if env.get("device"):
        return f"{env['device']} ({env.get('device_name', '?')}), {env.get('devices', 1)} " \
               "device(s)"
    return f"configured: {info.get('trainer.accelerator', '?')}, " \
           f"{info.get('trainer.devices', '?')} device(s) ({NOT_RECORDED})"


def training_facts(info: RunInfo) -> list[tuple[str, str]]:
    """Optimiser, schedule, loss, epochs and stop reason, augmentation, selection rule."""
    members = info.ensemble.get("members") or []
    if members:  # its config.yaml is the first member's: training is told on each member's card
        return [("training", f"{len(members)} member runs, each trained on its own (see each "
                             "member's model card); the ensemble itself was not trained"),
                ("combination", "mean of the members' class probabilities")]
    rows = []
    opt = info.get("optimizer") or {}
    if opt:
        rows.append(("optimiser", f"{opt.get('name')} (lr {opt.get('lr')}, weight decay "
                                  f"{opt.get('weight_decay')})"))
    sched = info.get("scheduler") or {}
    if sched:
        rows.append(("schedule", _kwargs_text(sched) if sched.get("name") != "none"
                     else "constant learning rate"))
    if info.get("warmup.steps"):  # detection's own section (was scheduler.warmup_steps)
        rows.append(("warm-up", f"learning rate raised linearly over the first "
                                f"{info.get('warmup.steps')} steps"))
    if info.get("loss.name") and info.task != "detection":
        rows.append(("loss", str(info.get("loss.name"))))
    rows.append(("batch size", str(info.get("data.batch_size", "–"))))
    training = info.status.get("training") or info.metrics.get("training") or {}
    if training:
        reason = training.get("stop_reason")
        rows.append(("epochs run", f"{training.get('epochs_run')} of "
                                   f"{training.get('max_epochs')}"
                                   + (f" ({STOP_WORDS.get(reason, reason)})" if reason else "")))
    else:
        rows.append(("epochs run", NOT_RECORDED))
    augment = {k: v for k, v in (info.get("data.augment") or {}).items()
               if v not in (False, 0, 0.0, None) and k != "elastic_spacing"}
    rows.append(("augmentation", _kwargs_text(augment) if augment else "none"))
    monitor = info.get("trainer.monitor")
    if monitor:
        best = training.get("best_epoch")
        score = training.get("best_score")
        chosen = f"; best epoch {best} ({monitor} {format_number(score)})" if best else ""
        rows.append(("model selection", f"checkpoint with the {info.get('trainer.monitor_mode')}"
                                        f" {monitor} on val{chosen}"))
    early = info.get("trainer.early_stopping") or {}
    if early.get("enabled"):
        rows.append(("early stopping", f"patience {early.get('patience')} epochs on {monitor}"))
    return rows


def fitted_on_val(info: RunInfo) -> list[str]:
    """What evaluation fitted on val (threshold, temperature, fusion weights), said plainly."""
    fitted = info.fitted
    lines = []
    threshold, temperature = fitted.get("threshold"), fitted.get("temperature")
    if isinstance(threshold, int | float):
        rule = (info.metrics.get("threshold") or {}).get("rule")
        lines.append(f"Decision threshold {threshold:.4g} was chosen on val"
                     + (f" ({rule})" if rule else "") + "; val figures at this threshold are "
                     "in-sample.")
    if isinstance(temperature, int | float):
        lines.append(f"Temperature {temperature:.4g} was fitted on val (NLL)."
                     if temperature != 1.0 else "No temperature scaling (temperature 1).")
    covariate = fitted.get("covariate_fusion")
    if isinstance(covariate, dict) and "weight" in covariate:
        lines.append("A covariates-only logistic regression was fitted on train and blended with "
                     f"the image model as w·p_image + (1 − w)·p_covariates; w = "
                     f"{float(covariate['weight']):.3g} was chosen on val (AUROC).")
    for key, value in fitted.items():
        if key not in ("threshold", "temperature", "checkpoint", "fitted_on",
                       "covariate_fusion") and value is not None:
            lines.append(f"{key.replace('_', ' ')} fitted on val: {_short(value)}.")
    tta = info.metrics.get("tta") or {}
    if tta.get("mode") not in (None, "none"):
        lines.append(f"Test-time augmentation ({tta['mode']}, {tta.get('views')} views) is "
                     "applied to every split; it was fixed in the config, not fitted.")
    lines.append("The checkpoint was chosen on val (highest/lowest monitored metric).")
    search = tuning_search(info.run_dir)
    if search:
        lines.append(search)
    return lines


def tuning_search(run_dir: Path) -> str | None:
    """A line saying the run is a trial of ``medilab tune``, whose val figure chose it among
    the search's trials, or None."""
    tune_dir = run_dir.parent.parent
    if run_dir.parent.name != "trials" or not (tune_dir / "tune.csv").is_file():
        return None
    try:
        trials = pd.read_csv(tune_dir / "tune.csv")
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    complete = int((trials.get("state", pd.Series(dtype=str)) == "COMPLETE").sum())
    return (f"This run is a trial of a hyperparameter search (medilab tune, {len(trials)} "
            f"trials, {complete} complete): its val figures took part in choosing the "
            "hyperparameters, so only held-out (test) figures are free of that selection.")


def _short(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(format_number(v) if isinstance(v, float) else str(v) for v in value)
    return format_number(value) if isinstance(value, float) else str(value)


def _kwargs_text(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "defaults"


CONVERT_MANIFEST = "manifest.csv"  # written by `medilab dicom convert` (medilab.io.convert)


def deidentification_lines(info: RunInfo) -> list[str]:
    """De-identification facts when the data folder came through ``medilab dicom convert``:
    salted patient keys, pseudonymised file names (an empty ``source`` column)."""
    root = info.get("data.root")
    if not root:
        return []
    manifest = Path(str(root)) / CONVERT_MANIFEST
    if not manifest.is_file():
        return []
    import pandas as pd

    try:
        frame = pd.read_csv(manifest, dtype=str, keep_default_na=False, nrows=100_000)
    except (OSError, ValueError):
        return []
    if "patient_key" not in frame:
        return []
    lines = ["The images were converted from DICOM by `medilab dicom convert`: header "
             "identifiers were not carried over and patients are named by salted hashes "
             "(patient_key); the salt is kept out of the manifest."]
    if "source" in frame and (frame["source"] == "").all():
        lines.append("File names were pseudonymised (--pseudonymise-paths): no source path "
                     "or folder name of the archive is kept.")
    return lines
