"""`SynapticScalingCallback(hold_norms=True)`: the rule alone sets each
unit's kernel norm; the optimizer only turns a unit's incoming weights, by
less as its virtual direction vector lengthens (the scale-invariant
layers' training under SGD: `test_equivalence.py`)."""

import keras
import numpy as np
import pytest
from homeostasis_testing import RULE_ALONE
from test_callback_centering import conv_model
from test_callback_centering import data
from test_callback_centering import dense_model

from keras_homeostasis import SynapticScalingCallback

# The rule all but off: the norms must then stay the initial ones.
INERT = dict(rate=1e-6, bias_rate=0.0, anchor=0.0, warmup=0)
ACTIVE = dict(rate=0.5, max_step=0.1, momentum=0.5, warmup=0)


def unit_norms(kernel):
    return np.sqrt(np.sum(np.square(kernel), axis=tuple(range(kernel.ndim - 1))))


def fit(model, callback, epochs=3, optimizer=None, jit_compile=False):
    model.compile(
        optimizer or keras.optimizers.SGD(0.5, momentum=0.9),
        "sparse_categorical_crossentropy",
        jit_compile=jit_compile,
    )
    x, y = data(model.input_shape[1:])
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, callbacks=[callback])
    return model.get_layer("h")


@pytest.mark.parametrize("build", [dense_model, conv_model], ids=["dense", "conv"])
def test_the_optimizer_turns_the_kernels_and_the_norms_stay(build):
    model = build()
    start = model.get_layer("h").kernel.numpy()
    held = SynapticScalingCallback(hold_norms=True, center_inputs=False, **INERT)
    kernel = fit(model, held).kernel.numpy()
    assert np.abs(kernel - start).max() > 0.05
    # The inert rule's factors differ from 1 by about its rate per step.
    np.testing.assert_allclose(unit_norms(kernel), unit_norms(start), rtol=1e-4)
    # Without the hold, the same steps lengthen and shorten the units.
    plain = build()
    alone = SynapticScalingCallback(**RULE_ALONE, **INERT)
    plain_kernel = fit(plain, alone).kernel.numpy()
    assert np.abs(unit_norms(plain_kernel) / unit_norms(start) - 1).max() > 0.05


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_each_units_norm_is_its_gain_after_every_run_of_the_rule(
    optimizer, jit_compile
):
    model = dense_model()
    start = model.get_layer("h").kernel.numpy()
    callback = SynapticScalingCallback(hold_norms=True, center_inputs=True, **ACTIVE)
    chosen = keras.optimizers.get({"class_name": optimizer, "config": {}})
    layer = fit(model, callback, optimizer=chosen, jit_compile=jit_compile)
    log_gain = layer.homeostasis.log_gain.numpy()
    # The rule's factors moved the gains away from the initial norms...
    assert np.abs(log_gain - np.log(unit_norms(start))).max() > 0.05
    # ...and each unit's norm is its gain, whatever the optimizer did.
    np.testing.assert_allclose(
        unit_norms(layer.kernel.numpy()), np.exp(log_gain), rtol=1e-5
    )


def test_the_held_norms_save_and_load(tmp_path):
    model = dense_model()
    layer = fit(model, SynapticScalingCallback(hold_norms=True, **ACTIVE))
    path = str(tmp_path / "held.weights.h5")
    model.save_weights(path)
    fresh = dense_model()
    SynapticScalingCallback(hold_norms=True).set_model(fresh)
    fresh.load_weights(path)
    state = fresh.get_layer("h").homeostasis
    np.testing.assert_array_equal(
        state.log_gain.numpy(), layer.homeostasis.log_gain.numpy()
    )
    # The turns' state: where the next step starts and the vector lengths.
    for name in ("previous", "length"):
        saved = getattr(layer.homeostasis.held, name).numpy()
        assert np.abs(saved - getattr(state.held, name).numpy()).max() == 0


def test_the_vector_lengths_grow_and_shrink_the_turns():
    model = dense_model()
    layer = fit(model, SynapticScalingCallback(hold_norms=True, **INERT))
    # Each step across a unit lengthens its vector: the turns get smaller.
    held = layer.homeostasis.held
    growth = held.length.numpy() / unit_norms(layer.kernel.numpy())
    assert growth.min() > 1 - 1e-4 and growth.max() > 1.1
    np.testing.assert_array_equal(held.previous.numpy(), layer.kernel.numpy())


def test_weights_set_between_fits_are_where_the_next_fit_starts():
    model = dense_model()
    callback = SynapticScalingCallback(hold_norms=True, **INERT)
    layer = fit(model, callback, epochs=1)
    # New directions at the held norms, set outside training.
    kernel = layer.kernel.numpy()
    turned = np.random.default_rng(0).normal(size=kernel.shape)
    turned *= unit_norms(kernel) / unit_norms(turned)
    layer.kernel.assign(turned)
    fit(model, callback, epochs=1, optimizer=keras.optimizers.SGD(1e-6))
    # A tiny step from the set kernel, not a jump back toward the old one.
    np.testing.assert_allclose(layer.kernel.numpy(), turned, atol=1e-4)


def test_norms_set_between_fits_are_held_from_then_on():
    model = dense_model()
    callback = SynapticScalingCallback(hold_norms=True, **INERT)
    layer = fit(model, callback, epochs=1)
    kernel = layer.kernel.numpy()
    # Every other unit set to twice its norm; the rest left as they were.
    scaled = kernel * np.where(np.arange(kernel.shape[-1]) % 2 == 0, 2.0, 1.0)
    layer.kernel.assign(scaled)
    before = np.log(unit_norms(kernel))
    fit(model, callback, epochs=1, optimizer=keras.optimizers.SGD(1e-6))
    # Kept, not put back to the old gains (those units would halve).
    np.testing.assert_allclose(layer.kernel.numpy(), scaled, atol=1e-4)
    log_gain = layer.homeostasis.row("log_gain").numpy()
    np.testing.assert_allclose(log_gain[0::2], before[0::2] + np.log(2.0), atol=1e-5)
    np.testing.assert_allclose(log_gain[1::2], before[1::2], atol=1e-5)


def test_hold_norms_must_be_a_bool():
    with pytest.raises(ValueError, match="hold_norms='yes'"):
        SynapticScalingCallback(hold_norms="yes")


def test_gain_bounds_are_refused_with_hold_norms():
    with pytest.raises(ValueError, match="max_gain=2.0"):
        SynapticScalingCallback(hold_norms=True, max_gain=2.0)


def test_the_callback_centers_and_holds_by_default():
    callback = SynapticScalingCallback()
    assert callback.center_inputs and callback.hold_norms
    callback.set_model(dense_model())
    assert callback.bindings
    for _, state in callback.bindings:
        assert state.centering is not None and state.held is not None


def test_gain_bounds_with_the_defaults_name_the_option_to_pass():
    with pytest.raises(ValueError, match="or pass hold_norms=False"):
        SynapticScalingCallback(min_gain=0.5)
    callback = SynapticScalingCallback(hold_norms=False, min_gain=0.5)
    assert callback.settings["min_gain"] == 0.5


def test_a_transposed_convolution_is_named():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4, 4, 2)),
            keras.layers.Conv2DTranspose(3, 2, activation="relu", name="up"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )
    with pytest.raises(ValueError, match="layer 'up' is a Conv2DTranspose"):
        SynapticScalingCallback(layers=["up"], hold_norms=True).set_model(model)


def test_the_state_of_another_hold_setting_is_refused():
    model = dense_model()
    SynapticScalingCallback(hold_norms=False).set_model(model)
    with pytest.raises(ValueError, match="hold_norms=False"):
        SynapticScalingCallback().set_model(model)


def test_config_round_trip_keeps_hold_norms():
    callback = SynapticScalingCallback(hold_norms=True, rate=0.1)
    again = SynapticScalingCallback.from_config(callback.get_config())
    assert again.hold_norms is True and again.settings["rate"] == 0.1


class OwnKernelDense(keras.layers.Dense):
    """A Dense layer keeping its kernel in an attribute of its own."""

    def build(self, input_shape):
        self.own = self.add_weight(shape=(input_shape[-1], self.units), name="own")
        self.built = True

    @property
    def kernel(self):
        return self.own

    def call(self, inputs):
        return self.activation(keras.ops.matmul(inputs, self.own))


def test_a_layer_without_keras_kernel_attribute_is_named():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            OwnKernelDense(3, use_bias=False, activation="relu", name="own"),
            keras.layers.Dense(2, activation="softmax", name="out"),
        ]
    )
    with pytest.raises(ValueError, match="layer 'own' \\(OwnKernelDense\\)"):
        SynapticScalingCallback(
            layers=["own"], hold_norms=True, center_inputs=False
        ).set_model(model)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"hold_norms": False, "norm_relaxation": 1e-4}, "pass `hold_norms=True`"),
        ({"hold_norms": True, "norm_relaxation": 2.0}, "norm_relaxation=2.0"),
        ({"hold_norms": True, "norm_relaxation": "1e-4"}, "norm_relaxation='1e-4'"),
    ],
)
def test_a_bad_norm_relaxation_is_named(options, match):
    with pytest.raises((TypeError, ValueError), match=match):
        SynapticScalingCallback(**options)
