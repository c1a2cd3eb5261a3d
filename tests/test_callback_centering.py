"""`SynapticScalingCallback(center_inputs=True)`: a plain layer's units keep
their offsets at the input mean through every kernel change."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis.input_centering import InputCentering


def data(shape, n=64, seed=0):
    rng = np.random.default_rng(seed)
    # Inputs far from zero mean: a kernel step then moves each unit's
    # offset a lot unless the bias gives it back.
    x = (rng.random((n, *shape)) + 0.5).astype("float32")
    return x, rng.integers(0, 3, n)


def dense_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((12,)),
            keras.layers.Dense(8, activation="relu", name="h"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )


def conv_model(padding="valid", use_bias=True):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(
                4, 3, padding=padding, activation="relu", name="h", use_bias=use_bias
            ),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )


def sequence_model():
    # A Dense layer on every step of a sequence: its inputs' mean, and the
    # bias gradient its kernel's is centered with, run over batch and time.
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((5, 12)),
            keras.layers.Dense(8, activation="relu", name="h"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )


class Subclassed(keras.Model):
    """A subclassed model with a nested Sequential block, as users write."""

    def __init__(self):
        super().__init__()
        self.first = keras.layers.Dense(8, activation="relu", name="first")
        self.block = keras.Sequential(
            [keras.layers.Dense(8, activation="relu", name="inner")], name="block"
        )
        self.head = keras.layers.Dense(3, activation="softmax", name="out")

    def call(self, inputs):
        return self.head(self.block(self.first(inputs)))


def offsets_at(layer, mean, kernel, bias):
    """Each unit's pre-activation, under `kernel` and `bias`, for an input
    equal to `mean` everywhere (a valid convolution: every position)."""
    x = np.broadcast_to(mean, (1, *layer.input.shape[1:])).astype("float32")
    saved = layer.kernel.numpy(), layer.bias.numpy(), layer.activation
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)
    layer.activation = keras.activations.linear
    try:
        z = keras.ops.convert_to_numpy(layer(x))
    finally:
        layer.kernel.assign(saved[0])
        layer.bias.assign(saved[1])
        layer.activation = saved[2]
    return z.reshape(-1, z.shape[-1])


@pytest.mark.parametrize("build", [dense_model, conv_model], ids=["dense", "conv"])
def test_kernel_steps_leave_each_units_offset_at_the_input_mean(build):
    # Bias gradient zeroed and intrinsic plasticity off: only the kernel
    # moves (the optimizer's step and the rule's factor), so the units'
    # pre-activations at the input mean must not move at all.
    model = build()
    x, y = data(model.input_shape[1:])
    callback = SynapticScalingCallback(
        center_inputs=True, bias_rate=0.0, warmup=0, rate=0.5, hold_norms=False
    )
    optimizer = keras.optimizers.SGD(0.5)
    callback.set_model(model)
    layer = model.get_layer("h")
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    with callback.attached(model):
        for _ in range(4):
            kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            grads = [
                tf.zeros_like(g) if v is layer.bias else g
                for g, v in zip(grads, model.trainable_variables)
            ]
            optimizer.apply(grads, model.trainable_variables)
            mean = layer.homeostasis.centering.input_mean.mean().numpy()
            before = offsets_at(layer, mean, kernel, bias)
            after = offsets_at(layer, mean, layer.kernel.numpy(), layer.bias.numpy())
            assert np.abs(layer.kernel.numpy() - kernel).max() > 1e-3
            np.testing.assert_allclose(after, before, atol=2e-5)
    np.testing.assert_allclose(mean, x.reshape(-1, x.shape[-1]).mean(0), rtol=1e-5)


def test_fit_with_xla_keeps_a_plain_model_and_saves_the_centering(tmp_path):
    model = conv_model()
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=True)
    x, y = data(model.input_shape[1:], n=96)
    callback = SynapticScalingCallback(center_inputs=True, warmup=0, hold_norms=False)
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[callback])
    layer = model.get_layer("h")
    centering = layer.homeostasis.centering
    assert isinstance(centering, InputCentering)
    assert int(centering.input_mean.steps.numpy()) == 6
    # The rule measures drives from the centered bias `b + x_bar . w`: the
    # units' mean drive is about zero, not `x_bar . w` (inputs near 1).
    estimates = layer.homeostasis.estimates(callback.settings)
    drive = np.abs(centering.drive.numpy())
    assert np.abs(estimates["drive_mean"].numpy()).max() < 0.05 * drive.max()
    assert [type(v).__name__ for v in model.layers] == ["Conv2D", "Flatten", "Dense"]
    path = str(tmp_path / "centered.weights.h5")
    model.save_weights(path)
    fresh = conv_model()
    SynapticScalingCallback(center_inputs=True, hold_norms=False).set_model(fresh)
    fresh.load_weights(path)
    restored = fresh.get_layer("h").homeostasis.centering
    for saved, loaded in zip(centering.variables, restored.variables):
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy())
    assert restored.input_mean.steps.numpy() == 6


def test_center_inputs_must_be_a_bool():
    with pytest.raises(ValueError, match="center_inputs=1"):
        SynapticScalingCallback(center_inputs=1, hold_norms=False)


def test_a_layer_without_bias_named_in_layers_is_refused():
    # Picked by the callback itself it is scaled uncentered instead
    # (tests/test_layer_modes.py).
    model = conv_model(use_bias=False)
    with pytest.raises(ValueError, match="layer 'h' has none"):
        SynapticScalingCallback(
            layers=["h"], center_inputs=True, hold_norms=False
        ).set_model(model)


def test_the_state_of_another_centering_setting_is_refused():
    model = dense_model()
    SynapticScalingCallback(center_inputs=False, hold_norms=False).set_model(model)
    with pytest.raises(ValueError, match="center_inputs=False"):
        SynapticScalingCallback(center_inputs=True, hold_norms=False).set_model(model)


def test_config_round_trip_keeps_center_inputs():
    callback = SynapticScalingCallback(
        center_inputs=True, center_gradients=False, rate=0.1, hold_norms=False
    )
    again = SynapticScalingCallback.from_config(callback.get_config())
    assert again.center_inputs is True and again.center_gradients is False
    assert again.settings["rate"] == 0.1


def test_center_gradients_must_be_a_bool():
    with pytest.raises(ValueError, match="center_gradients='no'"):
        SynapticScalingCallback(
            center_inputs=True, center_gradients="no", hold_norms=False
        )


def test_a_layer_of_another_kind_named_in_layers_is_refused():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2DTranspose(3, 3, activation="relu", name="up"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, name="out"),
        ]
    )
    with pytest.raises(ValueError, match="layer 'up' is a Conv2DTranspose"):
        SynapticScalingCallback(
            layers=["up"], center_inputs=True, hold_norms=False
        ).set_model(model)


@pytest.mark.parametrize(
    "build, center_gradients, centered",
    [
        (dense_model, True, True),
        (dense_model, False, False),
        (conv_model, True, False),
        (sequence_model, True, True),
    ],
    ids=["dense", "dense_plain_gradient", "conv", "sequence"],
)
def test_a_dense_kernel_gets_the_centered_gradient_and_the_outputs_stay(
    build, center_gradients, centered
):
    model = build()
    x, y = data(model.input_shape[1:])
    layer = model.get_layer("h")
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    def gradients():
        with tf.GradientTape() as tape:
            outputs = model(x, training=True)
            loss = loss_fn(y, outputs)
        kernel, bias = tape.gradient(loss, [layer.kernel, layer.bias])
        return outputs.numpy(), kernel.numpy(), bias.numpy()

    plain_outputs, plain_kernel, plain_bias = gradients()
    callback = SynapticScalingCallback(
        center_inputs=True, center_gradients=center_gradients, hold_norms=False
    )
    callback.set_model(model)
    with callback.attached(model):
        outputs, kernel, bias = gradients()
    mean = layer.homeostasis.centering.input_mean.mean().numpy()
    np.testing.assert_array_equal(outputs, plain_outputs)
    np.testing.assert_allclose(bias, plain_bias, rtol=1e-6)
    if not centered:
        # Asked for, or a convolution (its channel means are not its
        # inputs' means at each position): the plain gradient.
        np.testing.assert_array_equal(kernel, plain_kernel)
        return
    # dL/dw of `(x - x_bar) . w`: the plain gradient less x_bar (x) dL/db.
    expected = plain_kernel - mean[:, None] * plain_bias[None, :]
    np.testing.assert_allclose(kernel, expected, rtol=1e-4, atol=1e-6)
    assert np.abs(kernel - plain_kernel).max() > 1e-3


def test_a_subclassed_model_with_a_nested_block_is_centered_at_batch_size_1():
    keras.utils.set_random_seed(0)
    model = Subclassed()
    model.compile("sgd", "sparse_categorical_crossentropy", jit_compile=True)
    x, y = data((12,), n=40)
    callback = SynapticScalingCallback(center_inputs=True, warmup=0, hold_norms=False)
    model.fit(x, y, batch_size=1, epochs=2, verbose=0, callbacks=[callback])
    inner = model.block.get_layer("inner")
    for layer in (model.first, inner):
        centering = layer.homeostasis.centering
        assert int(centering.input_mean.steps.numpy()) == 80
        assert centering.centers_gradient
    # The first layer's trace follows the data (a hundred-step average of
    # single examples), the inner layer's the first layer's ReLU outputs.
    first_mean = model.first.homeostasis.centering.input_mean.mean().numpy()
    np.testing.assert_allclose(first_mean, x.mean(0), atol=0.1)
    inner_mean = inner.homeostasis.centering.input_mean.mean().numpy()
    assert (inner_mean >= 0).all() and inner_mean.max() > 0
    assert np.isfinite(inner.kernel.numpy()).all()
    assert np.isfinite(inner.bias.numpy()).all()
