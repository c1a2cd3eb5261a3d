"""The `tune` section and `scaling.layer_targets` of the config schema."""

import pathlib

import pytest
import yaml

from keras_homeostasis.lab import config as config_lib
from keras_homeostasis.lab import train
from keras_homeostasis.lab import tune
from keras_homeostasis.lab.config import ConfigError
from keras_homeostasis.lab.config import load_config
from keras_homeostasis.lab.config import validate_config

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_tune_defaults():
    section = validate_config(None)["tune"]
    assert section["tuner"] == "random"
    assert section["objective"] == "val_accuracy"
    assert section["search_space"] is None
    assert section["overwrite"] is False


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"tune": {"max_trial": 3}}, "`tune.max_trial`"),
        ({"tune": {"tuner": "grid"}}, "`tune.tuner`"),
        ({"tune": {"max_trials": 0}}, "`tune.max_trials`"),
        ({"tune": {"executions_per_trial": 1.5}}, "`tune.executions_per_trial`"),
        ({"tune": {"objective": "accuracy"}}, "`tune.objective`"),
        ({"tune": {"entropy_weight": -1}}, "`tune.entropy_weight`"),
        ({"tune": {"validation_split": 0}}, "`tune.validation_split`"),
        ({"tune": {"validation_split": 1.0}}, "`tune.validation_split`"),
        ({"tune": {"seed": -2}}, "`tune.seed`"),
        ({"tune": {"initial_points": 0}}, "`tune.initial_points`"),
        ({"tune": {"hyperband_factor": 1}}, "`tune.hyperband_factor`"),
        ({"tune": {"overwrite": "yes"}}, "`tune.overwrite`"),
        ({"tune": {"search_space": {"rates": 0.1}}}, "`tune.search_space.rates`"),
        ({"tune": {"search_space": {"rate": 3.0}}}, "`tune.search_space.rate`"),
        (
            {"tune": {"search_space": {"rate": {"min": 0.1, "max": 0.01}}}},
            "`tune.search_space.rate`",
        ),
        (
            {"tune": {"search_space": {"period": [1, 2.5]}}},
            "`tune.search_space.period[1]`",
        ),
        ({"tune": {"search_space": ["rate"]}}, "`tune.search_space`"),
        (
            {"tune": {"search_space": {"target": [0.5, 1.0]}}},
            "`tune.search_space.target`",
        ),
        (
            {"tune": {"search_space": {"target_rate": {"min": 0.2, "max": 1.5}}}},
            "`tune.search_space.target_rate.max`",
        ),
        ({"tune": 3}, "`tune`"),
        ({"scaling": {"layer_targets": {"hidden_1": -1.0}}}, "layer_targets.hidden_1"),
        ({"scaling": {"layer_targets": {"hidden_1": 1.0}}}, "layer_targets.hidden_1"),
        ({"scaling": {"layer_targets": {"hidden_1": None}}}, "layer_targets.hidden_1"),
        ({"scaling": {"layer_targets": ["hidden_1"]}}, "`scaling.layer_targets`"),
        (
            {"scaling": {"layers": ["hidden_1"], "layer_targets": {"hidden_1": 0.5}}},
            "`scaling.layer_targets`",
        ),
    ],
)
def test_bad_tune_values_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        validate_config(raw)


def test_search_space_overrides_are_kept_in_canonical_form():
    config = validate_config(
        {"tune": {"search_space": {"rate": {"min": "1e-3", "max": 0.1}, "warmup": 5}}}
    )
    space = config["tune"]["search_space"]
    assert space["rate"] == {
        "min": 1e-3,
        "max": 0.1,
        "sampling": "linear",
        "step": None,
    }
    assert space["warmup"] == 5


def test_layer_targets_give_one_callback_per_layer():
    config = validate_config(
        {
            "model": {"normalization": "scaling"},
            "scaling": {"layer_targets": {"hidden_1": 0.4, "hidden_2": 0.2}},
        }
    )
    callbacks = train.scaling_callbacks(config, "scaling")
    assert [(c.layers, c.settings["target_rate"]) for c in callbacks] == [
        (["hidden_1"], 0.4),
        (["hidden_2"], 0.2),
    ]
    assert "layer_targets" not in config_lib.scaling_kwargs(config)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"model": {"normalization": "batchnorm"}}, "model.normalization"),
        (
            {
                "model": {"normalization": "scaling"},
                "scaling": {"layer_targets": {"hidden_1": 0.3}},
            },
            "scaling.layer_targets",
        ),
    ],
)
def test_untunable_configs_are_refused(raw, message):
    with pytest.raises(ConfigError, match=message):
        tune.check_tunable(validate_config(raw))


def test_shipped_tune_configs_are_tunable():
    paths = [
        p
        for p in sorted((ROOT / "configs").glob("*.yaml"))
        if "tune" in (yaml.safe_load(p.read_text()) or {})
    ]
    assert any(p.name == "tune_quickstart.yaml" for p in paths)
    for path in paths:
        tune.check_tunable(load_config(str(path)))
