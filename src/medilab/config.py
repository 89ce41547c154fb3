"""The experiment schema (pydantic) and YAML loading with command-line overrides."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_serializer,
    model_validator,
)

from medilab.errors import ConfigError


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# ----------------------------------------------------------------------------- data sources
class AugmentConfig(Strict):
    """Training-time augmentation; geometric changes move masks and boxes with the image."""

    hflip: bool = False
    vflip: bool = False
    rot90: bool = False
    rotate_degrees: float = Field(0.0, ge=0, le=180)
    translate: float = Field(0.0, ge=0, lt=1)
    scale: float = Field(0.0, ge=0, lt=1)  # zoom in [1 - scale, 1 + scale]
    brightness: float = Field(0.0, ge=0, lt=1)  # image only
    contrast: float = Field(0.0, ge=0, lt=1)  # image only
    # elastic deformation: std (pixels) of shifts at control points elastic_spacing apart; 0 = off
    elastic_magnitude: float = Field(0.0, ge=0)
    elastic_spacing: int = Field(32, ge=2)
    # segmentation: resample masks as one-hot maps (bilinear, like the image) and train on those
    # soft targets, so rotation, scaling and elastic deformation keep sub-pixel label positions
    soft_labels: bool = False


class DataCommon(Strict):
    """Options every data source shares; each source's own section subclasses this and is
    registered with its :class:`~medilab.data.sources.base.DataSource` (``data.source``)."""

    source: str
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    batch_size: int = Field(64, ge=1)
    # DataLoader worker processes; "auto": from the CPU cores this process may use (none on
    # one or two cores, else cores - 1, at most 4), with pinned memory when training on a GPU
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    # a test part nothing selects on (grouped by patient, stratified, seeded, saved in
    # splits.csv): scored once with the checkpoint, threshold and temperature val chose. Data
    # with its own test part (MedMNIST, a splits.csv with test rows) keeps that one instead.
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    splits_csv: Path | None = None  # reuse a saved splits.csv instead of splitting
    balanced_sampler: bool = False  # classification: draw training samples class-balanced
    # classification: names of the classes in label order (0, 1, …), shown on every page and
    # CSV; default: the source's own (MedMNIST: the dataset's label dictionary; image tables:
    # the label texts; else "0", "1", …)
    class_names: list[str] | None = None
    # binary classification: the class sensitivity, the ROC curve and the threshold are about
    # (one of the class names); default: class 1. It is served to the model as class 1.
    positive_class: str | None = None
    # decoded + prepared pixels of image files kept as .npy under cache_dir (None:
    # $MEDILAB_CACHE_DIR, else ~/.cache/medilab/arrays), keyed by file path, size, mtime and the
    # preparation settings, so later epochs, runs and folds do not decode again
    cache: bool = True
    cache_dir: Path | None = None


# ----------------------------------------------------------------------------- model, optimisation
class ModelConfig(Strict):
    """A registered model name and its keyword arguments."""

    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)


class LossConfig(Strict):
    name: Literal["cross_entropy", "dice", "dice_ce"] = "cross_entropy"  # detection: unused
    class_weights: list[float] | None = None
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)


class OptimizerConfig(Strict):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0)
    nesterov: bool = False


class SchedulerConfig(Strict):
    name: Literal["none", "plateau", "cosine", "step"] = "none"
    factor: float = Field(0.1, gt=0, lt=1)  # plateau and step: multiply the lr by this
    patience: int = Field(3, ge=0)  # plateau
    step_size: int = Field(10, ge=1)  # step: epochs between decays
    min_lr: float = Field(0.0, ge=0)  # cosine / plateau floor


class EarlyStoppingConfig(Strict):
    enabled: bool = True
    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0)


class TrainerConfig(Strict):
    max_epochs: int = Field(10, ge=1)
    # wall-clock limit "DD:HH:MM:SS": training stops there; the best checkpoint so far is kept
    max_time: str | None = Field(None, pattern=r"^\d{2}:\d{2}:\d{2}:\d{2}$")
    accelerator: str = "cpu"
    devices: int | str | list[int] = 1
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1)
    # "auto": bf16-mixed + channels-last where the CPU/GPU computes bf16 natively (AMX,
    # AVX512-BF16, Ampere+), else 32-true; or any Lightning precision ("32-true", "bf16-mixed")
    precision: str = "auto"
    sync_batchnorm: bool = False  # several devices: BatchNorm statistics over all of them
    # 2D conv weights in channels-last layout: faster oneDNN/cuDNN kernels (≈20 % on CPU with bf16)
    channels_last: bool = False
    # torch.compile the network for training (in place: checkpoints keep their keys); the first
    # steps pay the compilation, worth it for long runs of a fixed input size
    compile: bool = False
    monitor: str = "val/loss"
    monitor_mode: Literal["min", "max"] = "min"
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    # transfer learning: backbone frozen for this many epochs, then trained at
    # backbone_lr_factor × the learning rate (Lightning's BackboneFinetuning); 0 = off
    freeze_backbone_epochs: int = Field(0, ge=0)
    backbone_lr_factor: float = Field(0.1, gt=0, le=1)
    deterministic: bool = True
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = Field(1, ge=1)
    log_every_n_steps: int = Field(10, ge=1)
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    tensorboard: bool = False
    progress_bar: bool = True
    # seed ensemble: one member run per seed (RUN/seed<s>, each an ordinary run folder on one
    # shared split) and the ensemble of their mean probabilities in RUN itself; None = one run
    seeds: list[int] | None = Field(None, min_length=2)


class EvaluationConfig(Strict):
    # every task: bootstrap intervals; the rest is classification's, tta also segmentation's
    # (another task that sets one gets a warning: TaskFamily.unused_config_keys; a task
    # without TTA refuses tta)
    bootstrap_samples: int = Field(1000, ge=0)
    confidence: float = Field(0.95, gt=0, lt=1)
    # classification audits: metrics per subgroup of these metadata columns (numeric ones cut
    # at age_bands), whenever the data has them
    subgroups: list[str] = Field(default_factory=lambda: ["sex", "age"])
    # classification: divide logits by a temperature fitted on val (NLL) before scoring
    temperature_scaling: bool = False
    age_bands: list[float] = Field(default_factory=lambda: [40.0, 60.0])
    # test-time augmentation in evaluate and predict: "flips" = the mean of the class
    # probabilities over every combination of flips of the spatial axes (tta_axes: 0 = rows,
    # i.e. vertical flips, 1 = columns, 2 = …; None = all). Segmentation: the same as
    # inference.mirror_tta (with inference.mirror_tta_axes when tta_axes is None)
    tta: Literal["none", "flips"] = "none"
    tta_axes: list[int] | None = None
    # classification with covariates: a covariates-only logistic regression (fitted on train)
    # blended with the image model, p = w·p_image + (1 − w)·p_covariates, w chosen on val
    # (AUROC, ties: log loss), so the fused model is at least as good on val as the better
    # branch; "auto": on whenever the run has covariates
    covariate_fusion: Literal["auto", "off"] = "auto"


class SearchDistribution(Strict):
    """One searched config key of ``medilab tune``: exactly one of ``loguniform: [a, b]``,
    ``uniform: [a, b]``, ``int: [a, b]`` (both ends included) or ``choice: [v1, v2, …]``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    loguniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    integer: tuple[int, int] | None = Field(None, alias="int")
    choice: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_range(self) -> SearchDistribution:
        given = [name for name in ("loguniform", "uniform", "integer", "choice")
                 if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of loguniform, uniform, int, choice")
        bounds = self.loguniform or self.uniform or self.integer
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"[{bounds[0]}, {bounds[1]}]: the low end must be below the high end")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform needs a low end above 0")
        return self

    @model_serializer
    def _as_written(self) -> dict[str, Any]:
        """Only the distribution given, under its YAML name (``int``, not ``integer``)."""
        names = {"loguniform": "loguniform", "uniform": "uniform", "integer": "int",
                 "choice": "choice"}
        return {key: (list(value) if isinstance(value, tuple) else value)
                for name, key in names.items() if (value := getattr(self, name)) is not None}


class CardConfig(Strict):
    """What only the author knows, for the model card (``medilab card``): free text, every field
    optional; a missing one is listed on the card as "to be supplied by the author"."""

    intended_use: str | None = None  # clinical task, setting, intended users
    out_of_scope: str | None = None  # uses the model is not meant for
    clinical_background: str | None = None  # why the task matters, existing approaches
    objectives: str | None = None  # study objectives and hypotheses
    study_design: str | None = None  # prospective / retrospective, study goal
    data_sources: str | None = None  # institutions, dates, how cases were collected
    eligibility: str | None = None  # inclusion and exclusion criteria
    acquisition: str | None = None  # scanners, protocols, acquisition parameters
    deidentification: str | None = None  # how the data were de-identified
    missing_data: str | None = None  # how missing values were handled
    reference_standard: str | None = None  # definition of the labels and why this standard
    annotators: str | None = None  # who labelled, qualifications, training
    annotation_tools: str | None = None
    rater_variability: str | None = None  # inter/intra-rater agreement, how disagreements end
    sample_size: str | None = None  # how the sample size was arrived at
    external_validation: str | None = None  # external test data, if any
    explainability: str | None = None  # saliency / CAM methods used and how they were checked
    fairness: str | None = None  # approaches to fairness across groups
    implications: str | None = None  # implications for practice, next steps
    ethics: str | None = None  # ethics approval, consent or waiver
    registration: str | None = None  # registry name and number
    protocol: str | None = None  # where the study protocol can be read
    data_availability: str | None = None
    code_availability: str | None = None
    funding: str | None = None  # sources of funding and the funders' role
    conflicts: str | None = None  # conflicts of interest
    patient_involvement: str | None = None  # patient and public involvement


class ExperimentConfig(Strict):
    """One experiment: everything needed to reproduce a run.

    ``data`` is one registered source's section (chosen by ``data.source``) and ``task`` a
    registered task family; validate through :func:`validate_config`, which knows them all.
    """

    experiment: str = "experiment"
    task: str = "classification"
    seed: int = 42
    data: DataCommon
    model: ModelConfig
    loss: LossConfig = Field(default_factory=LossConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    # medilab tune's search space when no --space file is given: dotted config keys →
    # distributions (see SearchDistribution); ignored by train
    tune: dict[str, SearchDistribution] | None = None
    card: CardConfig | None = None  # the author's part of the model card (optional)


# ----------------------------------------------------------------------------- loading
def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``key.sub=value`` into (["key", "sub"], value); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY.SUB=VALUE")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``key.sub=value`` override set."""
    result = _deep_copy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return result


def _registered_schema(task_sections: dict[str, type[BaseModel]] | None = None
                       ) -> type[ExperimentConfig]:
    """ExperimentConfig whose ``data`` is the union of every registered source's section (a
    source registered later, e.g. by a plug-in module, joins the union), plus the top-level
    sections the chosen task family owns (``TaskFamily.config_sections``, e.g. segmentation's
    ``inference:``), each defaulted when absent."""
    from medilab.registry import SOURCES

    return _schema_for(tuple(SOURCES.get(name).Config for name in SOURCES.names()),
                       tuple(sorted((task_sections or {}).items())))


@functools.cache
def _schema_for(
    sources: tuple[type, ...], task_sections: tuple[tuple[str, type[BaseModel]], ...] = ()
) -> type[ExperimentConfig]:
    data_type = Annotated[Union[sources], Field(discriminator="source")]  # noqa: UP007
    owned: dict[str, Any] = {name: (model, Field(default_factory=model))
                             for name, model in task_sections}
    return create_model("ExperimentConfig", __base__=ExperimentConfig, data=(data_type, ...),
                        **owned)


def _task_family(raw: dict[str, Any]) -> Any:
    """The registered family ``raw`` names (None for a missing or unknown one)."""
    from medilab.registry import TASKS

    name = raw.get("task", ExperimentConfig.model_fields["task"].default)
    return TASKS.get(name) if isinstance(name, str) and name in TASKS else None


def move_keys(raw: dict[str, Any], moved: dict[str, str], origin: str = "config"
              ) -> dict[str, Any]:
    """A copy of ``raw`` with each deprecated dotted key of ``moved`` (old → new, e.g.
    ``data.roi_size`` → ``inference.roi_size``) moved to its new place, warning once per key;
    a key set in both places is a ConfigError."""
    result = _deep_copy(raw)
    for old, new in moved.items():
        *old_parents, old_leaf = old.split(".")
        parent = _section(result, old_parents)
        if parent is None or old_leaf not in parent:
            continue
        *new_parents, new_leaf = new.split(".")
        target = result
        for part in new_parents:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{origin}: {part!r} is not a section")
            target = child
        if new_leaf in target:
            raise ConfigError(f"{origin}: {old} and {new} are both set; keep {new} only")
        target[new_leaf] = parent.pop(old_leaf)
        warnings.warn(f"{origin}: {old} is deprecated; set {new} instead", FutureWarning,
                      stacklevel=2)
    return result


# keys a task family took from a shared section into its own (detection: scheduler.warmup_steps
# → warmup.steps), with their old default: every config saved before the move holds them, so
# under another task the default is dropped quietly and any other value with a warning
RETIRED_SHARED_KEYS: dict[str, Any] = {"scheduler.warmup_steps": 0}


def drop_retired_keys(raw: dict[str, Any], task: str, origin: str = "config") -> dict[str, Any]:
    """A copy of ``raw`` without the :data:`RETIRED_SHARED_KEYS` its family did not move
    (``task`` names it in the warning for a value that had no effect)."""
    result = _deep_copy(raw)
    for key, default in RETIRED_SHARED_KEYS.items():
        *parents, leaf = key.split(".")
        parent = _section(result, parents)
        if parent is None or leaf not in parent:
            continue
        if parent.pop(leaf) != default:
            warnings.warn(f"{origin}: {key} has no effect on task {task!r}; ignored",
                          UserWarning, stacklevel=2)
    return result


def warn_unused_keys(config: ExperimentConfig, unused: tuple[str, ...], origin: str) -> None:
    """Warn once per dotted key of ``unused`` (keys the task ignores) set to other than its
    default."""
    for key in unused:
        *parents, leaf = key.split(".")
        node: Any = config
        for part in parents:
            node = getattr(node, part, None)
        field = type(node).model_fields.get(leaf) if isinstance(node, BaseModel) else None
        if field is None:
            continue
        default = field.default_factory() if field.default_factory else field.default
        if getattr(node, leaf) != default:
            warnings.warn(f"{origin}: {key} has no effect on task {config.task!r}; ignored",
                          UserWarning, stacklevel=3)


def _section(raw: dict[str, Any], parts: list[str]) -> dict[str, Any] | None:
    node: Any = raw
    for part in parts:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def validate_config(
    raw: dict[str, Any], origin: str = "config", overrides: list[str] | None = None
) -> ExperimentConfig:
    """Validate a raw mapping; errors name ``origin`` and every offending field (a field set by
    one of ``overrides`` names that override instead of the file)."""
    from medilab.registry import SOURCES, TASKS

    family = _task_family(raw)
    moved: dict[str, str] = getattr(family, "moved_config_keys", {})
    raw = move_keys(raw, moved, origin)
    raw = drop_retired_keys(raw, str(raw.get("task", "classification")), origin)
    try:
        config = _registered_schema(getattr(family, "config_sections", {})).model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {_describe(exc, overrides or [], moved)}") from None
    if config.task not in TASKS:
        raise ConfigError(f"{origin}: field 'task': unknown task {config.task!r}; available: "
                          f"{', '.join(TASKS.names())}")
    if config.task != "classification":
        for name in ("class_names", "positive_class"):
            if getattr(config.data, name) is not None:
                raise ConfigError(f"{origin}: data.{name} is for classification; "
                                  f"{config.task} runs name their classes otherwise")
    served = SOURCES.get(config.data.source).tasks
    if config.task not in served:
        raise ConfigError(f"{origin}: data.source {config.data.source!r} serves "
                          f"{' / '.join(served)}, not task {config.task!r}")
    if config.evaluation.tta != "none" and not getattr(family, "supports_tta", False):
        raise ConfigError(f"{origin}: evaluation.tta: {config.evaluation.tta!r} is not "
                          f"available for task {config.task!r}; set it to none")
    try:
        family.check_config(config)
    except ValueError as exc:  # a rule across sections (e.g. TTA axes vs. spatial_dims)
        raise ConfigError(f"{origin}: {exc}") from None
    warn_unused_keys(config, family.unused_config_keys, origin)
    return config


CREATED_PATHS = ("cache_dir",)  # data paths medilab makes itself


def check_data_paths(config: ExperimentConfig) -> None:
    """Every file or folder the ``data`` section names exists (as given, or under
    ``data.root``); a missing one is a ConfigError that says which key to override."""
    root = getattr(config.data, "root", None)
    for name, value in config.data:
        if name in CREATED_PATHS:
            continue
        beside_root = isinstance(root, Path) and name != "root" and (root / str(value)).exists()
        if isinstance(value, Path) and not value.exists() and not beside_root:
            raise ConfigError(f"data.{name}: {value} not found (point it at your data with "
                              f"-o data.{name}=PATH)")


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment file, apply overrides, validate; the file stem names it."""
    path = Path(path)
    raw = read_yaml(path)
    raw.setdefault("experiment", path.stem)
    return validate_config(apply_overrides(raw, overrides or []), origin=str(path),
                           overrides=overrides)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with errors that name the file."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_first_line(str(exc))})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid YAML (not UTF-8 text)") from None
    except (ValueError, RecursionError) as exc:  # e.g. a 5000-digit number, deep nesting
        raise ConfigError(f"{path}: not valid YAML ({type(exc).__name__})") from None
    if raw is None:
        raise ConfigError(f"{path}: the config file is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return raw


def config_to_yaml(config: ExperimentConfig) -> str:
    """The resolved config as YAML text (paths as strings)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def _describe(exc: ValidationError, overrides: list[str], moved: dict[str, str]) -> str:
    """Every invalid field (the discriminator tag dropped from the path), the first on the
    first line and the rest indented below; fields set by an override name it (also when
    ``moved`` took its deprecated key to a new place)."""
    keys = (".".join(parse_override(text)[0]) for text in overrides)
    set_by = {moved.get(key, key): text for key, text in zip(keys, overrides, strict=True)}
    messages = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        if len(loc) >= 2 and loc[0] == "data" and error["type"] != "union_tag_invalid":
            loc = [loc[0], *loc[2:]]  # drop the data source tag
        field = ".".join(loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            message = f"unknown key {field!r}"
        elif error["type"] == "missing":
            message = f"missing required field {field!r}"
        else:
            message = f"field {field!r}: {error['msg']}"
        source = next((text for key, text in set_by.items()
                       if field == key or field.startswith(key + ".")), None)
        messages.append(message + (f" (from -o {source})" if source else ""))
    return "\n  ".join(messages[:8] + ([f"… and {len(messages) - 8} more"]
                                        if len(messages) > 8 else []))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _deep_copy(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in raw.items()}
