"""medilab.tune.space: reading and checking a search space, suggestions and overrides."""

from __future__ import annotations

import optuna
import pytest
import yaml

from medilab.config import load_config
from medilab.errors import ConfigError
from medilab.tune.space import decoded, override, parse_space, read_space, suggest


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_every_distribution_is_read(tmp_path, digits_config):
    space_file = write(tmp_path / "space.yaml", """
optimizer.lr: {loguniform: [1.0e-4, 1.0e-2]}
model.kwargs.dropout: {uniform: [0, 0.5]}
data.batch_size: {choice: [16, 32]}
trainer.max_epochs: {int: [1, 3]}
""")
    space = read_space(space_file, load_config(digits_config))
    assert space["optimizer.lr"].loguniform == (1e-4, 1e-2)
    assert space["model.kwargs.dropout"].uniform == (0.0, 0.5)
    assert space["data.batch_size"].choice == [16, 32]
    assert space["trainer.max_epochs"].integer == (1, 3)
    assert space["trainer.max_epochs"].model_dump() == {"int": [1, 3]}


@pytest.mark.parametrize(("text", "message"), [
    ("optimizer.lr: {normal: [0, 1]}", "key 'optimizer.lr' (normal): unknown distribution"),
    ("optimizer.lr: {uniform: [0.1, 0.01]}", "key 'optimizer.lr': Value error, [0.1, 0.01]: "
                                             "the low end must be below the high end"),
    ("optimizer.lr: {loguniform: [0, 0.1]}", "loguniform needs a low end above 0"),
    ("optimizer.lr: {uniform: [0, 1], choice: [1]}", "give exactly one of"),
    ("optimizer.lr: {choice: []}", "key 'optimizer.lr' (choice)"),
    ("optimizer.lr: 0.01", "key 'optimizer.lr'"),
])
def test_a_bad_distribution_names_the_file_and_key(tmp_path, digits_config, text, message):
    space_file = write(tmp_path / "space.yaml", text)
    with pytest.raises(ConfigError) as error:
        read_space(space_file, load_config(digits_config))
    assert str(error.value).startswith(f"{space_file}: ")
    assert message in str(error.value)


@pytest.mark.parametrize(("text", "message"), [
    ("optimizer.lrr: {uniform: [0.001, 0.01]}",
     "key 'optimizer.lrr': unknown key 'optimizer.lrr'"),
    ("optimizer.lr: {uniform: [0, 0.01]}",
     "key 'optimizer.lr': field 'optimizer.lr': Input should be greater than 0"),
    ("optimizer.name: {choice: [adam, lion]}", "key 'optimizer.name': field 'optimizer.name'"),
    ("data.val_fraction: {uniform: [0.1, 0.3]}", "key 'data.val_fraction': cannot be searched"),
])
def test_a_key_the_config_refuses_is_named(tmp_path, digits_config, text, message):
    space_file = write(tmp_path / "space.yaml", text)
    with pytest.raises(ConfigError, match="^" + str(space_file)) as error:
        read_space(space_file, load_config(digits_config))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_the_config_tune_section_is_the_default_space(tmp_path, digits_config):
    raw = yaml.safe_load(digits_config.read_text())
    raw["tune"] = {"optimizer.lr": {"loguniform": [1e-3, 1e-1]}}
    path = write(tmp_path / "with_tune.yaml", yaml.safe_dump(raw))
    config = load_config(path)
    assert list(read_space(None, config, str(path))) == ["optimizer.lr"]
    raw["tune"] = {"optimizer.lr": {"between": [1, 2]}}
    with pytest.raises(ConfigError, match="with_tune.yaml: unknown key 'tune.optimizer.lr"):
        load_config(write(path, yaml.safe_dump(raw)))
    with pytest.raises(ConfigError, match="no search space"):
        read_space(None, load_config(digits_config), "tiny.yaml")


def test_an_empty_space_is_refused():
    with pytest.raises(ConfigError, match="space.yaml: the search space is empty"):
        parse_space({}, "space.yaml")


@pytest.mark.parametrize("value", [1e-5, 0.25, 3, "adamw", True, [16, 32]])
def test_an_override_reads_back_as_the_same_value(value):
    key, text = override("a.b", value).split("=", 1)
    assert key == "a.b"
    assert yaml.safe_load(text) == value


def test_suggestions_stay_in_range_and_list_choices_come_back_as_lists():
    space = parse_space({"lr": {"loguniform": [1e-4, 1e-2]}, "n": {"int": [1, 3]},
                         "sizes": {"choice": [[16], [32, 16]]}}, "space")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = {key: suggest(trial, key, d) for key, d in space.items()}
        assert 1e-4 <= values["lr"] <= 1e-2
        assert values["n"] in (1, 2, 3)
        assert values["sizes"] in ([16], [32, 16])
        assert decoded(space, trial.params) == values
        study.tell(trial, 0.0)
