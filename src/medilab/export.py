"""Export a trained run's model to ONNX or TorchScript, checked against PyTorch: the softmax
probabilities of both on the same inputs must agree within a tolerance, else nothing is kept.

ONNX models run with onnxruntime (``medilab predict --engine onnxruntime``); TorchScript with
``torch.jit.load``. Inputs: ``image`` (batch, channels, *spatial) and, for classifiers with
tabular covariates, ``covariates`` (batch, n); output ``logits``. The batch axis is dynamic, and
for segmentation the spatial axes too (sliding windows of any size)."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medilab.errors import InputFileError, MedilabError
from medilab.io.atomic import write_text
from medilab.models.calibration import with_temperature
from medilab.precision_probe import phase_choice

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}
EXPORT_DIR = "export"
EXPORTS_RECORD = "export/exports.json"  # format → where the latest export of the run went
TOLERANCE = 1e-4
CHECK_BATCH = 4
SPATIAL_NAMES = ("depth", "height", "width")


@dataclass
class ExportResult:
    """Where the model went and how closely it reproduces PyTorch's probabilities."""

    path: Path
    format: str
    inputs: dict[str, list[int | str]]
    max_abs_diff: float
    tolerance: float
    checked_on: str = "random inputs"
    # the parity check compares like with like: PyTorch in fp32 against the exported model
    # (onnxruntime / TorchScript run fp32); `predict --engine torch` runs the run's precision
    # (trainer.precision resolved on this machine) and, when that is not fp32, differs by
    # predict_max_abs_diff from the exported model on the same inputs
    compared_precision: str = "32-true"
    predict_precision: str = "32-true"
    predict_max_abs_diff: float | None = None

    def precision_line(self) -> str:
        """Which precision each path runs, in one line."""
        line = (f"both sides fp32 ({self.format} runs fp32); `predict --engine torch` here "
                f"runs {self.predict_precision}")
        if self.predict_max_abs_diff is not None:
            line += (f", {self.predict_max_abs_diff:.2e} from the exported model on the same "
                     "inputs")
        return line

    def to_json(self) -> str:
        body = {**asdict(self), "path": str(self.path)}
        return json.dumps(body, indent=2) + "\n"


def default_export_path(run_dir: Path, fmt: str) -> Path:
    """``RUN/export/model.onnx`` or ``RUN/export/model.pt``."""
    return run_dir / EXPORT_DIR / FORMATS[fmt]


def exported_model_path(run_dir: Path, fmt: str) -> Path:
    """Where the run's latest ``fmt`` export went (``RUN/export/exports.json``, written by
    :func:`export_run`, also for ``--out`` elsewhere), else the default path."""
    record = run_dir / EXPORTS_RECORD
    if record.is_file():
        try:
            recorded = json.loads(record.read_text(encoding="utf-8")).get(fmt)
        except (ValueError, AttributeError):
            recorded = None
        if isinstance(recorded, str):
            return Path(recorded)
    return default_export_path(run_dir, fmt)


def record_export(run_dir: Path, fmt: str, path: Path) -> None:
    """Note in ``RUN/export/exports.json`` where the ``fmt`` export was written."""
    record = run_dir / EXPORTS_RECORD
    try:
        saved = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    except ValueError:
        saved = {}
    saved = saved if isinstance(saved, dict) else {}
    saved[fmt] = str(path.resolve())
    write_text(record, json.dumps(saved, indent=2) + "\n")


def export_run(
    run_dir: str | Path, fmt: str = "onnx", out: str | Path | None = None,
    checkpoint: str = "best", tolerance: float = TOLERANCE, seed: int = 0,
) -> ExportResult:
    """Export a classification or segmentation run's model; refuse (no file left) when the
    exported model's probabilities differ from PyTorch's by more than ``tolerance``."""
    from medilab.runfolder import PRECISION_PROBE_FILE, load_run_config
    from medilab.tasks.registry import get_task_family
    from medilab.trained import load_module

    run_dir = Path(run_dir)
    if fmt not in FORMATS:
        raise MedilabError(f"export: format {fmt!r} unknown; choose {' or '.join(FORMATS)}")
    config = load_run_config(run_dir)
    family = get_task_family(config.task)
    if not family.export_kind:
        raise MedilabError(f"export: task {config.task!r}: {family.export_refusal}")
    module = load_module(run_dir, family, config, checkpoint).cpu().float()
    # the deployed model is the evaluated one: the temperature fitted on val is exported with it
    model = with_temperature(module.model, float(getattr(module, "temperature", 1.0))).eval()
    spec = input_spec(module, run_dir)
    segmentation = family.export_kind == "dense"  # per-pixel output, spatial axes of any size
    path = Path(out) if out is not None else default_export_path(run_dir, fmt)
    made_folder = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    generator = torch.Generator().manual_seed(seed)
    example = sample_inputs(spec, 2, generator)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # legacy-exporter and tracer deprecation notes
            if fmt == "onnx":
                _write_onnx(model, example, spec, segmentation, partial)
            else:
                torch.jit.save(torch.jit.trace(model, example), str(partial))
        exported = load_exported(partial, fmt)
        checked = validation_inputs(config, run_dir, spec) if not segmentation else None
        compared = checked or sample_inputs(spec, CHECK_BATCH, generator)
        diff = max_probability_difference(model, exported, compared)
        # as `predict` chooses it: auto's cached inference probe, else fp32 on a bf16 CPU
        predict_precision = phase_choice(config, "infer", run_dir / PRECISION_PROBE_FILE,
                                         model).precision
        predict_diff = None
        if not predict_precision.startswith("32"):  # what `predict --engine torch` runs
            with autocast_for(predict_precision):
                predict_diff = max_probability_difference(model, exported, compared)
        if segmentation:  # the spatial axes are dynamic: check a larger window too
            larger = {"image": [spec["image"][0], *(2 * int(d) for d in spec["image"][1:])]}
            diff = max(diff, max_probability_difference(model, exported,
                                                        sample_inputs(larger, 1, generator)))
        if not diff <= tolerance:
            raise MedilabError(f"export: {fmt} probabilities differ from PyTorch's by {diff:.2e} "
                               f"(tolerance {tolerance:.0e}); nothing written")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        if made_folder and not any(path.parent.iterdir()):
            path.parent.rmdir()
        raise
    finally:
        partial.unlink(missing_ok=True)
    shapes: dict[str, list[int | str]] = {name: ["batch", *dims] for name, dims in spec.items()}
    if segmentation:  # spatial axes of any size
        shapes["image"] = ["batch", spec["image"][0],
                           *SPATIAL_NAMES[-(len(spec["image"]) - 1):]]
    result = ExportResult(path, fmt, shapes, diff, tolerance,
                          "validation samples" if checked else "random inputs",
                          predict_precision=predict_precision,
                          predict_max_abs_diff=predict_diff)
    write_text(path.with_suffix(".json"), result.to_json())
    record_export(run_dir, fmt, path)
    return result


def autocast_for(precision: str) -> Any:
    """CPU autocast for a Lightning ``*-mixed`` / ``*-true`` reduced precision (bf16 or fp16);
    a no-op context for anything else."""
    import contextlib

    dtype = torch.bfloat16 if precision.startswith("bf16") else (
        torch.float16 if precision.startswith("16") else None)
    return torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()


def input_spec(module: nn.Module, run_dir: Path) -> dict[str, list[int | str]]:
    """Each model input's shape without the batch axis (segmentation: the sliding window)."""
    from medilab.runfolder import read_model_args

    if hasattr(module, "roi_size"):  # segmentation
        return {"image": [int(module.in_channels), *map(int, module.roi_size)]}
    spec: dict[str, list[int | str]] = {"image": [int(d) for d in module.input_shape]}
    try:
        covariates = read_model_args(run_dir).get("num_covariates")
    except InputFileError:
        covariates = None
    if covariates:
        spec["covariates"] = [int(covariates)]
    return spec


def validation_inputs(
    config: Any, run_dir: Path, spec: dict[str, Any], count: int = CHECK_BATCH
) -> tuple[torch.Tensor, ...] | None:
    """A few of the run's ``val`` samples as model inputs, or None when the run's data is not
    reachable from here (then seeded random inputs are checked instead)."""
    from medilab.config import check_data_paths
    from medilab.data.splits import load_splits
    from medilab.runfolder import SPLITS_FILE
    from medilab.tasks.registry import get_task_family

    try:
        check_data_paths(config)
        datamodule = get_task_family(config.task).build_datamodule(
            config, load_splits(run_dir / SPLITS_FILE))
        batch = next(iter(datamodule.loader("val")))
    except (MedilabError, OSError, KeyError, StopIteration):
        return None
    inputs = tuple(batch[name][:count].float() for name in spec if name in batch)
    return inputs if len(inputs) == len(spec) else None


def sample_inputs(
    spec: dict[str, list[int | str]], batch: int, generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """Seeded standard-normal inputs of the model's shapes."""
    return tuple(torch.randn((batch, *map(int, dims)), generator=generator)
                 for dims in spec.values())


def _write_onnx(
    model: nn.Module, example: tuple[torch.Tensor, ...], spec: dict[str, Any],
    dynamic_spatial: bool, path: Path,
) -> None:
    try:
        import onnx  # noqa: F401 - the exporter needs it
    except ImportError:
        raise MedilabError("export: ONNX export needs the onnx and onnxruntime packages "
                           "(pip install 'medilab[export]')") from None
    dynamic: dict[str, dict[int, str]] = {name: {0: "batch"} for name in [*spec, "logits"]}
    if dynamic_spatial:
        names = SPATIAL_NAMES[-(len(spec["image"]) - 1):]
        for key in ("image", "logits"):
            dynamic[key].update({2 + k: n for k, n in enumerate(names)})
    torch.onnx.export(model, example, str(path), dynamo=False, input_names=list(spec),
                      output_names=["logits"], dynamic_axes=dynamic, opset_version=17)


def load_exported(path: Path, fmt: str) -> Any:
    """A callable ``(*tensors) -> logits tensor`` running the exported file."""
    if fmt == "torchscript":
        return torch.jit.load(str(path), map_location="cpu")
    return OnnxModel(path)


class OnnxModel(nn.Module):
    """An ONNX file run by onnxruntime on the CPU, called like the PyTorch model it came from
    (tensors in, logits tensor out), so medilab's prediction code runs it unchanged."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        try:
            import onnxruntime
        except ImportError:
            raise MedilabError("onnxruntime is not installed (pip install 'medilab[export]')"
                               ) from None
        path = Path(path)
        if not path.is_file():
            raise InputFileError(path, "exported model not found (run `medilab export` first, "
                                 "or give the exported file with --model)")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
            raise InputFileError(path, f"not a readable ONNX model ({type(exc).__name__})"
                                 ) from None
        self.input_names = [i.name for i in self.session.get_inputs()]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        feed = {name: x.detach().float().cpu().numpy()
                for name, x in zip(self.input_names, inputs, strict=True)}
        return torch.from_numpy(np.asarray(self.session.run(None, feed)[0]))


def max_probability_difference(
    model: nn.Module, exported: Any, inputs: tuple[torch.Tensor, ...]
) -> float:
    """Largest absolute difference of softmax probabilities (over dim 1) on ``inputs``."""
    with torch.no_grad():
        expected = torch.softmax(model(*inputs).float(), dim=1)
        got = torch.softmax(exported(*inputs).float(), dim=1)
    if got.shape != expected.shape:
        raise MedilabError(f"export: exported model returns shape {tuple(got.shape)}, "
                           f"PyTorch {tuple(expected.shape)}")
    return float((got - expected).abs().max())


def use_engine(
    module: Any, config: Any, run_dir: Path, engine: str, model: str | Path | None = None
) -> tuple[Any, Any]:
    """(module, CPU fp32 inference Trainer) with the module's model replaced by an ONNX export
    run by onnxruntime (classification runs), so predictions keep their columns: ``model``, or
    where the run's latest export went (:func:`exported_model_path`)."""
    import lightning as L

    if engine != "onnxruntime":
        raise MedilabError(f"predict: engine {engine!r} unknown; choose torch or onnxruntime")
    from medilab.tasks.registry import get_task_family

    if not get_task_family(config.task).onnx_predict:
        raise MedilabError(f"predict --engine onnxruntime: only classification runs, not "
                           f"{config.task!r}")
    module.model = OnnxModel(Path(model) if model is not None
                             else exported_model_path(run_dir, "onnx"))
    if hasattr(module, "temperature"):
        module.temperature = 1.0  # the export divides by the fitted temperature itself
    trainer = L.Trainer(accelerator="cpu", devices=1, precision="32-true", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, inference_mode=True)
    return module, trainer
