"""Validation of the homeostatic hyper-parameters, for the callback and each layer."""

import math

import keras
import pytest

from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis import layers as homeostatic_layers
from keras_homeostasis.settings import DEFAULTS
from keras_homeostasis.settings import validate_settings

BAD_VALUES = [
    ("target_std", -1.0, ValueError),
    ("target_std", 0.0, ValueError),
    ("target_std", math.inf, ValueError),
    ("target_std", "0.5", TypeError),
    ("target_rate", 0.0, ValueError),
    ("target_rate", 1.0, ValueError),
    ("target_rate", "0.5", TypeError),
    ("bias_rate", -0.1, ValueError),
    ("bias_rate", 1.5, ValueError),
    ("rate", 0.0, ValueError),
    ("rate", 1.5, ValueError),
    ("rate", math.nan, ValueError),
    ("rate", "0.1", TypeError),
    ("momentum", 1.0, ValueError),
    ("momentum", -0.1, ValueError),
    ("max_step", 0.0, ValueError),
    ("max_step", -0.05, ValueError),
    ("min_gain", 1.5, ValueError),
    ("min_gain", 0.0, ValueError),
    ("max_gain", 0.5, ValueError),
    ("max_gain", math.inf, ValueError),
    ("period", 0, ValueError),
    ("period", 1.5, TypeError),
    ("period", True, TypeError),
    ("warmup", -1, ValueError),
    ("warmup", "10", TypeError),
    ("anchor", -0.1, ValueError),
    ("anchor", 1.5, ValueError),
    ("anchor", None, TypeError),
    ("silence_evidence", 0.5, ValueError),
    ("silence_evidence", math.inf, ValueError),
    ("silence_evidence", "10", TypeError),
    ("max_offset", 0.0, ValueError),
    ("max_offset", -1.0, ValueError),
    ("max_offset", math.inf, ValueError),
    ("max_offset", "1", TypeError),
]
BAD_IDS = [f"{name}={value!r}" for name, value, _ in BAD_VALUES]

EDGE_VALUES = {
    "target_std": None,
    "target_rate": None,
    "rate": 1.0,
    "bias_rate": 0.0,
    "momentum": 0.0,
    "max_step": 1.0,
    "min_gain": 1.0,
    "max_gain": 1.0,
    "period": 1,
    "warmup": 0,
    "anchor": 1.0,
    "silence_evidence": 1.0,
    "max_offset": 1e-3,
}

LAYERS = [
    lambda **kw: homeostatic_layers.HomeostaticDense(4, **kw),
    lambda **kw: homeostatic_layers.HomeostaticConv1D(4, 3, **kw),
    lambda **kw: homeostatic_layers.HomeostaticConv2D(4, 3, **kw),
    lambda **kw: homeostatic_layers.HomeostaticConv3D(4, 3, **kw),
]
LAYER_IDS = ["Dense", "Conv1D", "Conv2D", "Conv3D"]


def assert_names_and_echoes(error, name, value):
    message = str(error.value)
    assert f"`{name}`" in message, message
    echoes = {f"{name}={value!r}"}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        echoes.add(f"{name}={float(value)!r}")
    assert any(e in message for e in echoes), message


@pytest.mark.parametrize("name, value, error", BAD_VALUES, ids=BAD_IDS)
def test_validate_settings_rejects(name, value, error):
    with pytest.raises(error) as raised:
        validate_settings(**{name: value})
    assert_names_and_echoes(raised, name, value)


@pytest.mark.parametrize("name, value, error", BAD_VALUES, ids=BAD_IDS)
def test_callback_rejects(name, value, error):
    with pytest.raises(error) as raised:
        SynapticScalingCallback(**{name: value})
    assert_names_and_echoes(raised, name, value)


@pytest.mark.parametrize("make", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("name, value, error", BAD_VALUES, ids=BAD_IDS)
def test_layer_rejects(make, name, value, error):
    with pytest.raises(error) as raised:
        make(**{name: value})
    assert_names_and_echoes(raised, name, value)


def test_unknown_argument_is_named():
    with pytest.raises(TypeError, match="tagret"):
        validate_settings(tagret=0.5)
    with pytest.raises(TypeError, match="tagret"):
        SynapticScalingCallback(tagret=0.5)


@pytest.mark.parametrize("make", LAYERS, ids=LAYER_IDS)
def test_layer_unknown_argument_is_named(make):
    # Unknown keywords reach Keras' own Layer check, which names them.
    with pytest.raises((TypeError, ValueError), match="tagret"):
        make(tagret=0.5)


def test_defaults_cover_every_setting_and_validate():
    assert validate_settings() == DEFAULTS
    assert set(validate_settings(rate=1)) == set(DEFAULTS)


def test_edge_values_are_accepted_and_coerced():
    settings = validate_settings(**EDGE_VALUES)
    assert settings == EDGE_VALUES
    assert isinstance(validate_settings(rate=1)["rate"], float)
    assert isinstance(validate_settings(target_std=2)["target_std"], float)


def test_settings_of_the_first_release_are_dropped_with_a_warning():
    with pytest.warns(UserWarning, match="revive"):
        settings = validate_settings(target=0.5, revive=0.01, rate=0.2)
    assert settings == {**DEFAULTS, "rate": 0.2}
    with pytest.warns(UserWarning, match="scale_bias"):
        layer = homeostatic_layers.HomeostaticDense(3, scale_bias=True)
    assert "scale_bias" not in layer.get_config()


@pytest.mark.parametrize("make", LAYERS, ids=LAYER_IDS)
def test_layers_accept_edge_values(make):
    layer = make(**EDGE_VALUES)
    assert layer.homeostasis_settings == EDGE_VALUES


@pytest.mark.parametrize(
    "layers", [[], [3], "not a list of layers".split, keras.layers.Layer()]
)
def test_callback_rejects_bad_layer_selection(layers):
    with pytest.raises(TypeError, match="`layers`"):
        SynapticScalingCallback(layers=layers)


def test_callback_accepts_one_name_or_one_class():
    assert SynapticScalingCallback(layers="hidden").layers == ["hidden"]
    selection = SynapticScalingCallback(layers=keras.layers.Dense).layers
    assert selection == [keras.layers.Dense]
