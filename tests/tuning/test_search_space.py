"""The homeostatic search space: validation, registration, config mapping."""

import re

import keras_tuner
import pytest

from keras_homeostasis.settings import validate_settings
from keras_homeostasis.tuning import search_space as space_lib

LAYERS = ["hidden_1", "hidden_2"]


def test_default_space_searches_the_documented_parameters():
    space = space_lib.validate_search_space()
    searched = {name for name, spec in space.items() if spec is not None}
    assert searched == {
        "rate",
        "momentum",
        "min_gain",
        "max_gain",
        "period",
        "warmup",
        "scale_bias",
        "target_mode",
        "per_layer_targets",
        "target",
    }
    assert space["rate"]["sampling"] == "log"
    assert space["momentum"]["sampling"] == "reverse_log"
    assert space["target"]["sampling"] == "log"
    # Every bound is itself a valid setting.
    for name, spec in space.items():
        if isinstance(spec, dict) and name in validate_settings():
            validate_settings(**{name: spec["min"]})
            validate_settings(**{name: spec["max"]})


def test_overrides_replace_one_parameter_each():
    space = space_lib.validate_search_space(
        {"rate": "1e-1", "momentum": [0.9, 0.99], "period": None}
    )
    assert space["rate"] == 0.1  # YAML's `1e-1` is a string.
    assert space["momentum"] == [0.9, 0.99]
    assert space["period"] is None
    assert space["warmup"] == space_lib.DEFAULT_SEARCH_SPACE["warmup"]


@pytest.mark.parametrize(
    "overrides, path",
    [
        ({"rates": 0.1}, "search_space.rates"),
        ({"rate": 5.0}, "search_space.rate"),
        ({"rate": {"min": 0.2, "max": 0.1}}, "search_space.rate"),
        ({"rate": {"min": 0.0, "max": 0.1, "sampling": "log"}}, "search_space.rate"),
        (
            {"rate": {"min": 0.01, "max": 0.1, "sampling": "cubic"}},
            "search_space.rate.sampling",
        ),
        ({"rate": {"min": 0.01, "max": 0.1, "steps": 2}}, "search_space.rate"),
        ({"rate": {"min": 0.01}}, "search_space.rate"),
        ({"rate": []}, "search_space.rate"),
        ({"rate": [0.1, 0.1]}, "search_space.rate"),
        ({"momentum": 1.0}, "search_space.momentum"),
        ({"momentum": [0.9, 1.5]}, "search_space.momentum[1]"),
        ({"period": 0}, "search_space.period"),
        ({"period": {"min": 1, "max": 8, "step": 0.5}}, "search_space.period.step"),
        ({"warmup": -1}, "search_space.warmup"),
        ({"min_gain": 2.0}, "search_space.min_gain"),
        ({"max_gain": 0.5}, "search_space.max_gain"),
        ({"scale_bias": "yes"}, "search_space.scale_bias"),
        ({"scale_bias": {"min": 0, "max": 1}}, "search_space.scale_bias"),
        ({"target_mode": "median"}, "search_space.target_mode"),
        ({"target": -0.5}, "search_space.target"),
        ({"target": None}, "search_space.target"),
        ({"per_layer_targets": "both"}, "search_space.per_layer_targets"),
        ("rate", "search_space"),
    ],
)
def test_bad_search_space_names_the_parameter(overrides, path):
    with pytest.raises(ValueError, match=re.escape(f"`{path}")) as info:
        space_lib.validate_search_space(overrides)
    assert "Received" in str(info.value) or "Allowed" in str(info.value)


def test_layer_mean_needs_no_target():
    space = space_lib.validate_search_space(
        {"target_mode": "layer_mean", "target": None}
    )
    assert space["target"] is None


def _declare(overrides, values=None, layers=LAYERS):
    hp = keras_tuner.HyperParameters()
    hp.values.update(values or {})
    space = space_lib.validate_search_space(overrides)
    return hp, space_lib.declare(hp, space, layers)


def test_declare_registers_prefixed_hyper_parameters():
    hp, groups = _declare(None)
    names = {p.name for p in hp.space}
    assert {
        "scaling/rate",
        "scaling/momentum",
        "scaling/period",
        "scaling/target_mode",
        "scaling/per_layer_targets",
        "scaling/target",
        "scaling/layer_targets/hidden_1",
        "scaling/layer_targets/hidden_2",
    } <= names
    assert "scaling/max_step" not in names
    # Defaults: the first choice (layer mean), a shared group.
    ((layers, settings),) = groups
    assert layers is None and settings["target"] is None


def test_declare_shared_absolute_target():
    values = {
        "scaling/target_mode": "absolute",
        "scaling/per_layer_targets": False,
        "scaling/target": 0.3,
        "scaling/rate": 0.2,
    }
    _, groups = _declare(None, values)
    ((layers, settings),) = groups
    assert layers is None
    assert settings["target"] == 0.3 and settings["rate"] == 0.2


def test_declare_per_layer_targets():
    values = {
        "scaling/target_mode": "absolute",
        "scaling/per_layer_targets": True,
        "scaling/layer_targets/hidden_1": 0.5,
        "scaling/layer_targets/hidden_2": 0.1,
    }
    hp, groups = _declare(None, values)
    assert [(layers, s["target"]) for layers, s in groups] == [
        (["hidden_1"], 0.5),
        (["hidden_2"], 0.1),
    ]
    updates = space_lib.config_updates(hp.values)
    assert updates["layer_targets"] == {"hidden_1": 0.5, "hidden_2": 0.1}
    assert updates["target"] is None


def test_fixed_values_and_unsearched_parameters():
    hp, groups = _declare({"rate": 0.3, "momentum": None, "target_mode": None})
    ((_, settings),) = groups
    assert settings["rate"] == 0.3
    assert settings["momentum"] == validate_settings()["momentum"]
    parameters = {p.name: p for p in hp.space}
    assert "scaling/momentum" not in parameters
    assert "scaling/target" not in parameters
    assert type(parameters["scaling/rate"]).__name__ == "Fixed"


def test_config_updates_of_layer_mean_and_shared_target():
    assert space_lib.config_updates(
        {"scaling/target_mode": "layer_mean", "scaling/rate": 0.1}
    ) == {"rate": 0.1, "target": None, "layer_targets": None}
    assert space_lib.config_updates(
        {
            "scaling/target_mode": "absolute",
            "scaling/per_layer_targets": False,
            "scaling/target": 0.7,
        }
    ) == {"target": 0.7, "layer_targets": None}


@pytest.mark.parametrize("seed", range(40))
def test_every_sampled_configuration_gives_valid_settings(seed):
    # Draw every hyper-parameter at random (corners included through the
    # extreme seeds' probabilities), as an oracle would.
    hp = keras_tuner.HyperParameters()
    space = space_lib.validate_search_space()
    space_lib.declare(hp, space, LAYERS)
    drawn = keras_tuner.HyperParameters()
    for parameter in hp.space:
        if seed == 0:
            value = parameter.prob_to_value(0.0)
        elif seed == 1:
            value = parameter.prob_to_value(0.999999)
        else:
            value = parameter.random_sample(seed * 1000 + len(drawn.values))
        drawn.values[parameter.name] = value
    groups = space_lib.declare(drawn, space, LAYERS)
    assert groups
    for layers, settings in groups:
        assert validate_settings(**settings) == settings
        assert layers is None or layers[0] in LAYERS
