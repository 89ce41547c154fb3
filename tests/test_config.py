from pathlib import Path

import pytest

from medilab.config import (
    apply_overrides,
    config_to_yaml,
    load_config,
    parse_override,
)
from medilab.data.sources.digits import PixelCsvData
from medilab.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_repo_configs_validate():
    from medilab.study import load_study

    for path in sorted((REPO / "configs").glob("*.yaml")):
        if "study:" in path.read_text():
            name, members = load_study(path)
            assert name == path.stem and len(members) >= 4
            continue
        config = load_config(path)
        assert config.experiment == path.stem


def test_load_config_names_experiment_after_file(digits_config):
    config = load_config(digits_config)
    assert config.experiment == "tiny_digits"
    assert isinstance(config.data, PixelCsvData)
    assert config.trainer.max_epochs == 2


def test_overrides_are_typed_and_nested(digits_config):
    config = load_config(
        digits_config,
        ["trainer.max_epochs=30", "optimizer.lr=1e-4", "trainer.precision=bf16-mixed",
         "data.augment.hflip=true", "model.kwargs.hidden_sizes=[8, 4]"],
    )
    assert config.trainer.max_epochs == 30
    assert config.optimizer.lr == pytest.approx(1e-4)
    assert config.trainer.precision == "bf16-mixed"
    assert config.data.augment.hflip is True
    assert config.model.kwargs["hidden_sizes"] == [8, 4]


def test_parse_override_requires_equals():
    with pytest.raises(ConfigError, match="KEY.SUB=VALUE"):
        parse_override("trainer.max_epochs")
    assert parse_override("a.b=") == (["a", "b"], "")


def test_override_into_scalar_is_an_error():
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_unknown_key_names_key_and_file(tmp_path, digits_config):
    text = digits_config.read_text() + "\nbogus_section: 1\n"
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "unknown key 'bogus_section'" in str(info.value)


def test_unknown_nested_key_is_named(digits_config):
    with pytest.raises(ConfigError, match="unknown key 'trainer.max_epoch'"):
        load_config(digits_config, ["trainer.max_epoch=3"])


def test_wrong_type_names_field(digits_config):
    with pytest.raises(ConfigError, match="'trainer.max_epochs'"):
        load_config(digits_config, ["trainer.max_epochs=many"])


def test_unknown_data_source_is_named(digits_config):
    with pytest.raises(ConfigError, match="bogus"):
        load_config(digits_config, ["data.source=bogus"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(empty)


def test_resolved_yaml_round_trips(tmp_path, digits_config):
    config = load_config(digits_config, ["trainer.max_epochs=7"])
    saved = tmp_path / "resolved.yaml"
    saved.write_text(config_to_yaml(config))
    again = load_config(saved)
    assert again.model_dump() == config.model_dump()


def test_every_problem_is_listed_and_overrides_are_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {source: sklearn_digits, bogus_key: 1}\nmodel: {name: simple_nn}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["trainer.max_epochs=-3"])
    text = str(info.value)
    assert "unknown key 'data.bogus_key'" in text
    assert "'trainer.max_epochs'" in text and "(from -o trainer.max_epochs=-3)" in text


def test_missing_data_path_names_the_key_to_override(tmp_path):
    from medilab.config import check_data_paths

    path = tmp_path / "c.yaml"
    path.write_text(f"data: {{source: pixel_csv, train_csv: {tmp_path / 'no.csv'}}}\n"
                    "model: {name: simple_nn}\n")
    with pytest.raises(ConfigError, match=r"data.train_csv: .*no.csv not found .*"
                                          r"-o data.train_csv=PATH"):
        check_data_paths(load_config(path))


def test_repo_configs_use_no_moved_or_ignored_keys():
    import warnings

    from medilab.config import read_yaml

    for path in sorted((REPO / "configs").glob("*.yaml")):
        if "study:" not in path.read_text():
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                load_config(path)
    assert "warmup" in read_yaml(REPO / "configs" / "lab5_tbx11k.yaml")


def test_a_retired_shared_key_is_dropped_outside_its_task(digits_config):
    import warnings

    from medilab.registry import TASKS

    with warnings.catch_warnings():  # every config saved before the move holds the default
        warnings.simplefilter("error")
        config = load_config(digits_config, ["scheduler.warmup_steps=0"])
    assert "warmup_steps" not in config.scheduler.model_dump()
    assert "warmup" not in config.model_dump()
    with pytest.warns(UserWarning, match=r"scheduler.warmup_steps has no effect on task "
                      r"'classification'; ignored"):
        load_config(digits_config, ["scheduler.warmup_steps=50"])
    with pytest.raises(ConfigError, match="unknown key 'warmup'"):
        load_config(digits_config, ["warmup.steps=5"])
    assert TASKS.get("classification").unused_config_keys == ()
