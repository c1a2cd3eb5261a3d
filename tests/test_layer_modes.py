"""Layers that cannot take `center_inputs` or `hold_norms` (no bias, a
transposed convolution): scaled without the option when the callback picked
them, refused when the user named them."""

import warnings

import homeostasis_testing as ht
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_homeostasis import SynapticScalingCallback

HELD_CENTERED = {"center_inputs": True, "hold_norms": True, "warmup": 0}


def without_bias_model():
    # A layer without a bias, as before a normalization layer.
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((12,)),
            keras.layers.Dense(8, activation="relu", use_bias=False, name="nobias"),
            keras.layers.Dense(8, activation="relu", name="h"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )


def decoder_model():
    # A transposed convolution: neither centered nor held.
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2DTranspose(4, 3, activation="relu", name="up"),
            keras.layers.Conv2D(4, 3, activation="relu", name="h"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )


def fitted(model, shape, callback, epochs=2):
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy"
    )
    x, y = ht.noise(shape, n=64)
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, callbacks=[callback])
    return model


def state(model, name):
    return model.get_layer(name).homeostasis


def assert_norms_held(model, name):
    kernel = model.get_layer(name).kernel.numpy()
    norms = np.sqrt(np.sum(np.square(kernel), axis=tuple(range(kernel.ndim - 1))))
    np.testing.assert_allclose(
        norms, np.exp(state(model, name).log_gain.numpy()), rtol=1e-5
    )


def test_a_picked_layer_without_bias_is_held_but_not_centered():
    callback = SynapticScalingCallback(**HELD_CENTERED)
    with pytest.warns(UserWarning, match="'nobias' has none .*scaled without it"):
        model = fitted(without_bias_model(), (12,), callback)
    nobias, h = state(model, "nobias"), state(model, "h")
    assert nobias.centering is None and nobias.held is not None
    assert h.centering is not None and h.held is not None
    assert int(nobias.steps.numpy()) == int(h.steps.numpy()) == 8
    assert_norms_held(model, "nobias")
    assert_norms_held(model, "h")
    assert all(np.all(np.isfinite(w.numpy())) for w in model.weights)


def test_a_picked_transposed_convolution_is_scaled_plainly(tmp_path):
    # Logged too: the dashboard's writer reads each layer's own state.
    callback = SynapticScalingCallback(log_dir=str(tmp_path), **HELD_CENTERED)
    with pytest.warns(UserWarning) as caught:
        model = fitted(decoder_model(), (6, 6, 2), callback)
    message = " ".join(str(w.message) for w in caught)
    assert (
        "centers ['Dense', 'Conv1D', 'Conv2D', 'Conv3D'] layers only; layer 'up'"
        in message
    )
    assert "units on the last axis; layer 'up' is a Conv2DTranspose" in message
    up, h = state(model, "up"), state(model, "h")
    assert up.centering is None and up.held is None and up.scales_kernel
    # The rule still scaled it: its cumulative gains moved off 1.
    assert int(up.steps.numpy()) == 8
    assert np.abs(up.log_gain.numpy()).max() > 0
    assert h.centering is not None and h.held is not None
    assert_norms_held(model, "h")
    tags = {
        value.tag
        for path in tmp_path.rglob("events.out.tfevents.*")
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    }
    # Both layers logged; only the centered, held one has an input mean
    # and a step scale.
    assert {"up", "h", "h/input_mean", "h/step_scale"} <= tags, sorted(tags)
    assert not {"up/input_mean", "up/step_scale"} & tags


def test_every_layer_that_takes_the_options_gives_no_warning():
    model = without_bias_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        callback = SynapticScalingCallback(exclude=["nobias"], **HELD_CENTERED)
        fitted(model, (12,), callback, epochs=1)
    assert not hasattr(model.get_layer("nobias"), "homeostasis")


@pytest.mark.parametrize(
    "options, match",
    [
        ({"hold_norms": False}, "layer 'nobias' has none \\(use_bias=False\\)"),
        ({"center_inputs": False}, None),
    ],
)
def test_a_layer_named_in_layers_takes_every_option_or_is_refused(options, match):
    model = without_bias_model()
    callback = SynapticScalingCallback(layers=["nobias", "h"], **options)
    if match is None:  # a layer without a bias can hold its norms
        callback.set_model(model)
        assert state(model, "nobias").held is not None
        return
    with pytest.raises(ValueError, match=match):
        callback.set_model(model)


def test_a_named_transposed_convolution_is_refused_for_held_norms():
    model = decoder_model()
    callback = SynapticScalingCallback(layers=["up"], hold_norms=True)
    with pytest.raises(ValueError, match="'up' is a Conv2DTranspose. Exclude it"):
        callback.set_model(model)


def test_a_later_fit_keeps_each_layers_mode():
    model = fitted(
        without_bias_model(), (12,), SynapticScalingCallback(**HELD_CENTERED)
    )
    again = SynapticScalingCallback(**HELD_CENTERED)
    with pytest.warns(UserWarning, match="'nobias'"):
        fitted(model, (12,), again, epochs=1)
    assert int(state(model, "nobias").steps.numpy()) == 12
    assert_norms_held(model, "nobias")
