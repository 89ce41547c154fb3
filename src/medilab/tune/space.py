"""The search space of ``medilab tune``: dotted config keys → distributions, read from a
``--space`` YAML file or the config's ``tune:`` section, checked against the config schema and
turned into Optuna suggestions and ``-o KEY=VALUE`` overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import yaml
from pydantic import TypeAdapter, ValidationError

from medilab.config import (
    ExperimentConfig,
    SearchDistribution,
    apply_overrides,
    read_yaml,
    validate_config,
)
from medilab.errors import ConfigError

Space = dict[str, SearchDistribution]
# keys that would change the split every trial shares (the tune makes it once, in DIR)
SPLIT_KEYS = ("data.splits_csv", "data.val_fraction", "data.test_fraction", "tune")
_ADAPTER = TypeAdapter(Space)


def read_space(path: Path | None, config: ExperimentConfig, origin: str = "config") -> Space:
    """The space of ``path`` (a mapping of keys, or one ``tune:`` section), else the config's
    ``tune:`` section; every key checked against ``config`` (:func:`check_space`)."""
    if path is not None:
        raw = read_yaml(Path(path))
        if set(raw) == {"tune"} and isinstance(raw["tune"], dict):
            raw = raw["tune"]
        space = parse_space(raw, str(path))
        origin = str(path)
    elif config.tune:
        space = dict(config.tune)
    else:
        raise ConfigError(f"{origin}: no search space: give --space SPACE.yaml or a tune: section")
    check_space(space, config, origin)
    return space


def parse_space(raw: dict[str, Any], origin: str) -> Space:
    """Validate a mapping of keys → distributions; errors name ``origin`` and the key."""
    if not raw:
        raise ConfigError(f"{origin}: the search space is empty")
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            key, *rest = [str(part) for part in error["loc"]] or ["(top level)"]
            where = f" ({'.'.join(rest)})" if rest else ""
            message = ("unknown distribution (use loguniform, uniform, int or choice)"
                       if error["type"] == "extra_forbidden" else error["msg"])
            lines.append(f"key {key!r}{where}: {message}")
        raise ConfigError(f"{origin}: " + "\n  ".join(lines[:8])) from None


def check_space(space: Space, config: ExperimentConfig, origin: str) -> None:
    """Every key is a config field that accepts the ends of its range (each choice): applied
    to ``config`` as an override and validated like ``-o KEY=VALUE``."""
    raw = config.model_dump(mode="json")
    for key, distribution in space.items():
        if any(key == k or key.startswith(k + ".") for k in SPLIT_KEYS):
            raise ConfigError(f"{origin}: key {key!r}: cannot be searched (every trial shares "
                              "one split and one config apart from the searched keys)")
        for value in candidate_values(distribution):
            try:
                validate_config(apply_overrides(raw, [override(key, value)]),
                                origin=f"{origin}: key {key!r}")
            except ConfigError as exc:
                raise ConfigError(str(exc).split("\n")[0]) from None


def candidate_values(distribution: SearchDistribution) -> list[Any]:
    """The values that bound a distribution: both ends of a range, or every choice."""
    if distribution.choice is not None:
        return list(distribution.choice)
    bounds = distribution.loguniform or distribution.uniform or distribution.integer
    return list(bounds or ())


def _scalar_choices(distribution: SearchDistribution) -> bool:
    return all(value is None or isinstance(value, bool | int | float | str)
               for value in distribution.choice or [])


def decoded(space: Space, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's Optuna params as config values (non-scalar choices back from JSON text)."""
    return {key: (json.loads(value) if key in space and not _scalar_choices(space[key])
                  and isinstance(value, str) else value) for key, value in params.items()}


def suggest(trial: optuna.Trial, key: str, distribution: SearchDistribution) -> Any:
    """``trial``'s value for ``key`` (non-scalar choices, e.g. lists, go through JSON text)."""
    if distribution.loguniform is not None:
        return trial.suggest_float(key, *distribution.loguniform, log=True)
    if distribution.uniform is not None:
        return trial.suggest_float(key, *distribution.uniform)
    if distribution.integer is not None:
        return trial.suggest_int(key, *distribution.integer)
    choices = distribution.choice or []
    if _scalar_choices(distribution):
        return trial.suggest_categorical(key, choices)
    return json.loads(trial.suggest_categorical(key, [json.dumps(c) for c in choices]))


def override(key: str, value: Any) -> str:
    """``KEY=VALUE`` with the value as YAML that reads back as the same value (``1.0e-05``,
    not ``1e-05``, which YAML reads as text)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000)
    return f"{key}={text.removesuffix(chr(10)).removesuffix('...').strip()}"
