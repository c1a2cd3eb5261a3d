"""Tests of the model and optimizer builders."""

import keras
import numpy as np
import pytest

from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis.lab import models
from keras_homeostasis.lab.data import load_dataset
from keras_homeostasis.layers import HomeostaticConv2D
from keras_homeostasis.layers import HomeostaticDense
from keras_homeostasis.weight_normalization import WeightNormalization
from keras_homeostasis.weight_normalization import unit_norms


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=64)


@pytest.mark.parametrize("normalization", models.NORMALIZATIONS)
@pytest.mark.parametrize("architecture", models.ARCHITECTURES)
def test_every_model_builds_and_fits_one_step(digits, architecture, normalization):
    (x, y), _ = digits
    model = models.build_model(
        architecture, normalization, x.shape[1:], 10, hidden=[16, 16]
    )
    model.compile(models.build_optimizer("sgd"), "sparse_categorical_crossentropy")
    before = [w.numpy().copy() for w in model.trainable_weights]
    callbacks = [SynapticScalingCallback()] if normalization == "scaling" else []
    history = model.fit(
        x[:32], y[:32], batch_size=32, epochs=1, verbose=0, callbacks=callbacks
    )
    assert np.isfinite(history.history["loss"][0])
    after = [w.numpy() for w in model.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    assert model.output_shape == (None, 10)
    names = models.hidden_layer_names(model)
    assert names == [f"hidden_{k}" for k in range(1, len(names) + 1)]
    assert len(names) == (2 if architecture == "mlp" else 3)


@pytest.mark.parametrize(
    "normalization, norm_class",
    [
        ("batchnorm", keras.layers.BatchNormalization),
        ("layernorm", keras.layers.LayerNormalization),
        ("groupnorm", keras.layers.GroupNormalization),
    ],
)
def test_norm_sits_between_linear_layer_and_relu(normalization, norm_class):
    model = models.build_model("mlp", normalization, (4,), 3, hidden=[8])
    linear, norm, relu = (
        model.get_layer(f"hidden_1{s}") for s in ("_linear", "_norm", "")
    )
    assert isinstance(linear, keras.layers.Dense) and not linear.use_bias
    assert linear.activation is keras.activations.linear
    assert isinstance(norm, norm_class)
    assert isinstance(relu, keras.layers.Activation)
    assert norm.input is linear.output and relu.input is norm.output


def test_cnn_layernorm_normalizes_over_positions_and_channels():
    model = models.build_model("cnn", "layernorm", (8, 8, 1), 10)
    norm = model.get_layer("hidden_1_norm")
    assert isinstance(norm, keras.layers.GroupNormalization) and norm.groups == 1
    assert isinstance(model.get_layer("hidden_3_norm"), keras.layers.LayerNormalization)


def test_groupnorm_groups_divide_the_width():
    model = models.build_model("mlp", "groupnorm", (4,), 3, hidden=[12], groups=8)
    assert model.get_layer("hidden_1_norm").groups == 4


def test_method_specific_layers():
    weightnorm = models.build_model("cnn", "weightnorm", (8, 8, 1), 10)
    assert isinstance(weightnorm.get_layer("hidden_1"), WeightNormalization)
    homeostatic = models.build_model(
        "cnn", "homeostatic_layers", (8, 8, 1), 10, scaling_settings={"rate": 0.2}
    )
    assert isinstance(homeostatic.get_layer("hidden_1"), HomeostaticConv2D)
    assert isinstance(homeostatic.get_layer("hidden_3"), HomeostaticDense)
    assert homeostatic.get_layer("hidden_3").rate == 0.2
    assert not homeostatic.get_layer("hidden_3").scale_invariant
    invariant = models.build_model("cnn", "scale_invariant_layers", (8, 8, 1), 10)
    assert isinstance(invariant.get_layer("hidden_1"), HomeostaticConv2D)
    assert invariant.get_layer("hidden_1").scale_invariant
    assert invariant.get_layer("hidden_3").scale_invariant
    plain = models.build_model("mlp", "scaling", (4,), 3)
    assert plain.get_layer("hidden_1").activation is keras.activations.relu
    assert [
        layer.units for layer in plain.layers if isinstance(layer, keras.layers.Dense)
    ] == [256, 256, 3]


@pytest.mark.parametrize("architecture", models.ARCHITECTURES)
def test_unitnorm_puts_each_hidden_unit_back_to_norm_one(digits, architecture):
    (x, y), _ = digits
    model = models.build_model(architecture, "unitnorm", x.shape[1:], 10, hidden=[8])
    model.compile(models.build_optimizer("sgd"), "sparse_categorical_crossentropy")
    model.fit(x[:32], y[:32], batch_size=16, epochs=1, verbose=0)
    for name in models.hidden_layer_names(model):
        norms = unit_norms(model.get_layer(name).kernel)
        np.testing.assert_allclose(np.asarray(norms), 1.0, rtol=1e-5)
    # The output layer is left as the optimizer steps it.
    assert model.get_layer("output").kernel.constraint is None


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"architecture": "rnn"}, "architecture"),
        ({"normalization": "dropout"}, "normalization"),
        ({"num_classes": 0}, "num_classes"),
        ({"hidden": [8, 0]}, "hidden"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    arguments = {
        "architecture": "mlp",
        "normalization": "none",
        "input_shape": (4,),
        "num_classes": 3,
        **kwargs,
    }
    with pytest.raises(ValueError, match=f"`{name}`"):
        models.build_model(**arguments)


def test_build_optimizer_defaults_and_overrides():
    sgd = models.build_optimizer("sgd")
    assert isinstance(sgd, keras.optimizers.SGD)
    assert float(sgd.learning_rate) == pytest.approx(0.05) and sgd.momentum == 0.9
    adam = models.build_optimizer("adam")
    assert isinstance(adam, keras.optimizers.Adam)
    assert float(adam.learning_rate) == pytest.approx(1e-3)
    adamw = models.build_optimizer("adamw", learning_rate=0.01, weight_decay=0.1)
    assert isinstance(adamw, keras.optimizers.AdamW)
    assert float(adamw.learning_rate) == pytest.approx(0.01)
    assert adamw.weight_decay == pytest.approx(0.1)
    assert models.build_optimizer("sgd", momentum=0.0).momentum == 0.0
    with pytest.raises(ValueError, match="`name`"):
        models.build_optimizer("rmsprop")


def test_only_scale_invariant_layers_take_norm_relaxation():
    rule = {"rate": 0.1, "norm_relaxation": 0.5}
    for method in ("centered_scale_invariant_layers", "scale_invariant_layers"):
        # A setting of its own wins over the config's.
        assert models.layer_settings(method, rule, 1e-4) == rule
        assert models.layer_settings(method, {"rate": 0.1}, 1e-4) == {
            "rate": 0.1,
            "norm_relaxation": 1e-4,
        }
    for method in ("homeostatic_layers", "centered_layers", "batchnorm"):
        assert models.layer_settings(method, rule, 1e-4) == {"rate": 0.1}


def test_only_the_callback_methods_holding_norms_take_norm_relaxation():
    held = models.callback_options("held_centered_scaling", 1e-4)
    assert held == {"center_inputs": True, "hold_norms": True, "norm_relaxation": 1e-4}
    assert "norm_relaxation" not in models.callback_options("centered_scaling", 1e-4)
    assert "norm_relaxation" not in models.callback_options("held_scaling", None)
