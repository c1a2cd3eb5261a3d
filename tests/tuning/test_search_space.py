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
        "bias_rate",
        "momentum",
        "period",
        "warmup",
        "target_mode",
        "per_layer_targets",
        "target_rate",
        "anchor",
    }
    assert space["anchor"]["sampling"] == "log"
    assert space["rate"]["sampling"] == "log"
    assert space["bias_rate"]["sampling"] == "log"
    assert space["momentum"]["sampling"] == "reverse_log"
    assert space["target_rate"] == {
        "min": 0.3,
        "max": 0.7,
        "sampling": "linear",
        "step": None,
    }
    assert space["target_mode"] == ["absolute", "layer_mean"]
    assert set(space_lib.SETTING_PARAMETERS) == set(validate_settings()) - {
        "target_rate"
    }
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
        ({"min_gain": [None, 0.5]}, "search_space.min_gain[0]"),
        ({"max_gain": 0.5}, "search_space.max_gain"),
        ({"max_gain": {"min": None, "max": 4.0}}, "search_space.max_gain.min"),
        ({"bias_rate": 1.5}, "search_space.bias_rate"),
        (
            {"bias_rate": {"min": 0.0, "max": 0.1, "sampling": "log"}},
            "search_space.bias_rate",
        ),
        ({"target_std": 0.0}, "search_space.target_std"),
        ({"target_std": [1.0, None]}, "search_space.target_std[1]"),
        ({"target_mode": "median"}, "search_space.target_mode"),
        ({"target_rate": 1.0}, "search_space.target_rate"),
        ({"target_rate": [0.5, 0.0]}, "search_space.target_rate[1]"),
        ({"target_rate": None}, "search_space.target_rate"),
        ({"target_rate": [0.4, None]}, "search_space.target_rate[1]"),
        ({"target": 0.5}, "search_space.target"),
        ({"scale_bias": [True, False]}, "search_space.scale_bias"),
        ({"per_layer_targets": "both"}, "search_space.per_layer_targets"),
        (
            {"per_layer_targets": {"min": 0, "max": 1}},
            "search_space.per_layer_targets",
        ),
        ({"scale_invariant": "yes"}, "search_space.scale_invariant"),
        ({"center_inputs": "yes"}, "search_space.center_inputs"),
        ({"center_inputs": {"min": 0, "max": 1}}, "search_space.center_inputs"),
        ({"hold_norms": "yes"}, "search_space.hold_norms"),
        ({"hold_norms": [True, False], "max_gain": 2.0}, "search_space.max_gain"),
        ({"hold_norms": True, "min_gain": [0.5, 0.9]}, "search_space.min_gain"),
        ({"norm_relaxation": 1.5, "scale_invariant": True}, "search_space.norm"),
        ({"norm_relaxation": [0.0, -1e-3], "scale_invariant": True}, "search_"),
        ({"norm_relaxation": 1e-3}, "search_space.scale_invariant"),
        ({"norm_relaxation": 1e-3, "hold_norms": False}, "search_space.hold_norms"),
        (
            {"norm_relaxation": 1e-3, "scale_invariant": False},
            "search_space.scale_invariant",
        ),
        ("rate", "search_space"),
    ],
)
def test_bad_search_space_names_the_parameter(overrides, path):
    with pytest.raises(ValueError, match=re.escape(f"`{path}")) as info:
        space_lib.validate_search_space(overrides)
    assert "Received" in str(info.value) or "Allowed" in str(info.value)


def test_layer_mean_needs_no_target_rate():
    space = space_lib.validate_search_space(
        {"target_mode": "layer_mean", "target_rate": None}
    )
    assert space["target_rate"] is None


def test_unbounded_gains_and_relative_set_points_are_base_settings():
    # `None` entries are not searched: the base settings' `None` (unbounded,
    # the layer's mean) is kept, and a fixed bound is a valid alternative.
    hp, groups = _declare(
        {"min_gain": None, "max_gain": 4.0, "target_mode": None},
        base={"target_std": None, "target_rate": None},
    )
    ((layers, settings),) = groups
    assert layers is None
    assert settings["min_gain"] is None and settings["max_gain"] == 4.0
    assert settings["target_std"] is None and settings["target_rate"] is None
    names = {p.name for p in hp.space}
    assert "scaling/min_gain" not in names and "scaling/target_rate" not in names


def _declare(overrides, values=None, layers=LAYERS, base=None):
    hp = keras_tuner.HyperParameters()
    hp.values.update(values or {})
    space = space_lib.validate_search_space(overrides)
    return hp, space_lib.declare(hp, space, layers, base)


def test_declare_registers_prefixed_hyper_parameters():
    hp, groups = _declare(None)
    names = {p.name for p in hp.space}
    assert {
        "scaling/rate",
        "scaling/bias_rate",
        "scaling/momentum",
        "scaling/period",
        "scaling/target_mode",
        "scaling/per_layer_targets",
        "scaling/target_rate",
        "scaling/layer_targets/hidden_1",
        "scaling/layer_targets/hidden_2",
    } <= names
    for unsearched in ("max_step", "min_gain", "max_gain", "target_std"):
        assert f"scaling/{unsearched}" not in names
    # Defaults: the first choices (absolute, shared), the range's minimum.
    ((layers, settings),) = groups
    assert layers is None
    assert settings["target_rate"] == 0.3
    assert settings["target_std"] == validate_settings()["target_std"]


def test_declare_layer_mean_is_pure_load_balancing():
    values = {"scaling/target_mode": "layer_mean", "scaling/rate": 0.2}
    hp, groups = _declare({"target_std": [0.5, 2.0]}, values)
    ((layers, settings),) = groups
    assert layers is None and settings["rate"] == 0.2
    assert settings["target_rate"] is None and settings["target_std"] is None
    # `target_std` only acts, and is only drawn, with an absolute set point.
    assert "scaling/target_std" not in hp.values
    assert space_lib.config_updates(hp.values) == {
        **{k[len("scaling/") :]: v for k, v in hp.values.items() if "mode" not in k},
        "target_rate": None,
        "target_std": None,
        "layer_targets": None,
    }


def test_declare_absolute_searches_target_std_when_asked():
    values = {
        "scaling/target_mode": "absolute",
        "scaling/per_layer_targets": False,
        "scaling/target_rate": 0.6,
        "scaling/target_std": 2.0,
    }
    hp, groups = _declare({"target_std": [0.5, 2.0]}, values)
    ((_, settings),) = groups
    assert settings["target_std"] == 2.0 and settings["target_rate"] == 0.6
    updates = space_lib.config_updates(hp.values)
    assert updates["target_std"] == 2.0 and updates["target_rate"] == 0.6


def test_declare_shared_absolute_target():
    values = {
        "scaling/target_mode": "absolute",
        "scaling/per_layer_targets": False,
        "scaling/target_rate": 0.4,
        "scaling/rate": 0.2,
    }
    _, groups = _declare(None, values)
    ((layers, settings),) = groups
    assert layers is None
    assert settings["target_rate"] == 0.4 and settings["rate"] == 0.2


def test_declare_per_layer_targets():
    values = {
        "scaling/target_mode": "absolute",
        "scaling/per_layer_targets": True,
        "scaling/layer_targets/hidden_1": 0.6,
        "scaling/layer_targets/hidden_2": 0.35,
    }
    hp, groups = _declare(None, values)
    assert [(layers, s["target_rate"]) for layers, s in groups] == [
        (["hidden_1"], 0.6),
        (["hidden_2"], 0.35),
    ]
    updates = space_lib.config_updates(hp.values)
    assert updates["layer_targets"] == {"hidden_1": 0.6, "hidden_2": 0.35}
    assert updates["target_rate"] is None


def test_fixed_values_and_unsearched_parameters():
    hp, groups = _declare({"rate": 0.3, "momentum": None, "target_mode": None})
    ((_, settings),) = groups
    assert settings["rate"] == 0.3
    assert settings["momentum"] == validate_settings()["momentum"]
    parameters = {p.name: p for p in hp.space}
    assert "scaling/momentum" not in parameters
    assert "scaling/target_rate" not in parameters
    assert type(parameters["scaling/rate"]).__name__ == "Fixed"


def test_config_updates_of_layer_mean_and_shared_target():
    assert space_lib.config_updates(
        {"scaling/target_mode": "layer_mean", "scaling/rate": 0.1}
    ) == {"rate": 0.1, "target_rate": None, "target_std": None, "layer_targets": None}
    assert space_lib.config_updates(
        {
            "scaling/target_mode": "absolute",
            "scaling/per_layer_targets": False,
            "scaling/target_rate": 0.7,
        }
    ) == {"target_rate": 0.7, "layer_targets": None}


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


def test_layer_options_draw_the_relaxation_for_scale_invariant_layers_only():
    space = space_lib.validate_search_space(
        {
            "scale_invariant": [False, True],
            "norm_relaxation": {"min": 1e-5, "max": 1e-2, "sampling": "log"},
        }
    )
    assert space_lib.searches_layer_parameters(space) == [
        "scale_invariant",
        "norm_relaxation",
    ]
    drawn = set()
    for seed in range(12):
        hp = keras_tuner.HyperParameters()
        hp.Choice("scaling/scale_invariant", [False, True])  # what a tuner draws
        hp.values["scaling/scale_invariant"] = bool(seed % 2)
        options = space_lib.declare_layer_options(hp, space)
        drawn.add(options["scale_invariant"])
        if options["scale_invariant"]:
            assert 1e-5 <= options["norm_relaxation"] <= 1e-2
        else:
            assert "norm_relaxation" not in options
    assert drawn == {False, True}
    # Not named: nothing registered, nothing returned.
    hp = keras_tuner.HyperParameters()
    assert space_lib.declare_layer_options(hp, space_lib.validate_search_space()) == {}
    assert not hp.space


def test_layer_options_draw_centering_on_its_own():
    space = space_lib.validate_search_space({"center_inputs": [False, True]})
    assert space_lib.searches_layer_parameters(space) == ["center_inputs"]
    drawn = set()
    for seed in range(4):
        hp = keras_tuner.HyperParameters()
        hp.Boolean("scaling/center_inputs")  # what a tuner draws
        hp.values["scaling/center_inputs"] = bool(seed % 2)
        options = space_lib.declare_layer_options(hp, space)
        assert list(options) == ["center_inputs"]
        drawn.add(options["center_inputs"])
    assert drawn == {False, True}
    assert "center_inputs: one of [False, True]" in space_lib.describe(space)


def test_hold_norms_is_drawn_for_the_callback_and_refused_for_the_layers():
    overrides = {"hold_norms": [False, True]}
    space = space_lib.validate_for_model(overrides, homeostatic_layers=False)
    assert space_lib.searches_layer_parameters(space) == ["hold_norms"]
    hp = keras_tuner.HyperParameters()
    hp.Boolean("scaling/hold_norms")  # what a tuner draws
    hp.values["scaling/hold_norms"] = True
    assert space_lib.declare_layer_options(hp, space) == {"hold_norms": True}
    values = {"scaling/hold_norms": True, "scaling/rate": 0.1}
    assert space_lib.config_updates(values) == {"hold_norms": True, "rate": 0.1}
    with pytest.raises(ValueError, match="search_space.hold_norms"):
        space_lib.validate_for_model(overrides, homeostatic_layers=True)


def test_config_updates_carry_the_layer_options():
    values = {"scaling/scale_invariant": True, "scaling/norm_relaxation": 1e-4}
    assert space_lib.config_updates(values) == {
        "scale_invariant": True,
        "norm_relaxation": 1e-4,
    }
    values = {"scaling/center_inputs": True, "scaling/rate": 0.1}
    assert space_lib.config_updates(values) == {"center_inputs": True, "rate": 0.1}
