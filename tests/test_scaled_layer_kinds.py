"""Every Keras layer kind the callback scales, on a short real fit.

Each scaled kind must count its steps and scale each unit's incoming
weights along the kernel's unit axis by that unit's gain; the kinds it
refuses are named in a warning (default selection) with the reason.
"""

import warnings

import keras
import numpy as np
import pytest
from homeostasis_testing import FAST as SHARED_FAST
from homeostasis_testing import LOSS
from homeostasis_testing import noise

from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis import layer_selection
from keras_homeostasis import metrics

# The shared fast rule alone, with steps up to 1: the gains move and differ
# between units at once.
FAST = {**SHARED_FAST, "max_step": 1.0}

KINDS = {
    "EinsumDense_2d": (
        (8,),
        lambda: keras.layers.EinsumDense(
            "ab,bc->ac", 6, bias_axes="c", activation="relu", name="scaled"
        ),
        -1,
    ),
    "EinsumDense_3d": (
        (4, 8),
        lambda: keras.layers.EinsumDense(
            "abc,cd->abd", (4, 6), bias_axes="d", activation="relu", name="scaled"
        ),
        -1,
    ),
    "Conv1DTranspose": (
        (6, 2),
        lambda: keras.layers.Conv1DTranspose(5, 2, activation="relu", name="scaled"),
        -2,
    ),
    "Conv2DTranspose": (
        (5, 5, 3),
        lambda: keras.layers.Conv2DTranspose(4, 2, activation="relu", name="scaled"),
        -2,
    ),
    "TimeDistributed_Dense": (
        (4, 8),
        lambda: keras.layers.TimeDistributed(
            keras.layers.Dense(6, activation="relu", name="scaled"), name="wrapper"
        ),
        -1,
    ),
}


def model_with(shape, layer):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    h = keras.layers.Flatten()(layer(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(h))
    # No learning: the kernel changes by the scaling alone.
    model.compile(keras.optimizers.SGD(0.0), LOSS)
    return model


@pytest.mark.parametrize("kind", list(KINDS))
def test_layer_kind_is_scaled_along_its_unit_axis(kind):
    shape, make, axis = KINDS[kind]
    model = model_with(shape, make())
    layer = next(x for x in layer_selection.all_layers(model) if x.name == "scaled")
    before = layer.kernel.numpy().copy()
    x, y = noise(shape, n=48)
    callback = SynapticScalingCallback(**FAST)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
              callbacks=[callback])  # fmt: skip
    [(bound, state)] = callback.bindings
    assert bound is layer
    assert state.units == before.shape[axis]
    assert int(state.steps.numpy()) == 3
    gains = np.exp(state.log_gain.numpy())
    assert np.ptp(gains) > 0.05  # units differ, so a wrong axis would show
    shape_of_gains = [1] * before.ndim
    shape_of_gains[axis] = -1
    want = before * gains.reshape(shape_of_gains)
    np.testing.assert_allclose(layer.kernel.numpy(), want, rtol=1e-4, atol=1e-6)


def test_time_distributed_dense_is_measured_over_every_time_step():
    shape, make, _ = KINDS["TimeDistributed_Dense"]
    model = model_with(shape, make())
    x, _ = noise(shape, n=32)
    report = metrics.UsageReport.from_model(model, x)
    wrapper = model.get_layer("wrapper")
    y = keras.ops.convert_to_numpy(wrapper(x)).reshape(-1, 6)
    np.testing.assert_allclose(report.activity["scaled"], np.abs(y).mean(0), 1e-5)


def refused_models():
    """`(model, name, reason)`: a refused layer among scalable ones."""
    inputs = keras.Input((6, 4))
    cases = [
        (keras.layers.SimpleRNN(4, return_sequences=True, name="rnn"), "recurrent"),
        (keras.layers.LSTM(4, return_sequences=True, name="lstm"), "recurrent"),
        (keras.layers.GRU(4, return_sequences=True, name="gru"), "recurrent"),
        (
            keras.layers.Bidirectional(
                keras.layers.LSTM(2, return_sequences=True), name="bi"
            ),
            "wraps recurrent layers",
        ),
        (keras.layers.DepthwiseConv1D(2, name="depthwise"), "depthwise"),
        (keras.layers.SeparableConv1D(4, 2, name="separable"), "separable"),
        (
            keras.layers.EinsumDense("abc,cde->abde", (6, 2, 2), name="einsum"),
            "no single unit axis",
        ),
    ]
    for layer, reason in cases:
        h = keras.layers.Flatten()(layer(inputs))
        h = keras.layers.Dense(5, activation="relu", name="hidden")(h)
        yield keras.Model(inputs, keras.layers.Dense(2)(h)), layer.name, reason
    for mode, name, reason in (("lora", "lora", "LoRA"), ("int8", "q", "quantized")):
        h = keras.layers.Dense(5, name=name)(keras.layers.Flatten()(inputs))
        h = keras.layers.Dense(5, activation="relu", name="hidden")(h)
        model = keras.Model(inputs, keras.layers.Dense(2)(h))
        if mode == "lora":
            model.get_layer(name).enable_lora(2)
        else:
            model.get_layer(name).quantize(mode)
        yield model, name, reason


@pytest.mark.parametrize("index", range(9))
def test_refused_kinds_are_skipped_with_a_warning_naming_layer_and_reason(index):
    model, name, reason = list(refused_models())[index]
    model.compile(keras.optimizers.SGD(0.01), LOSS)
    callback = SynapticScalingCallback(**FAST)
    x, y = noise((6, 4), n=32, classes=2)
    with pytest.warns(UserWarning, match=f"skips .*'{name}' \\(.*{reason}"):
        model.fit(x, y, batch_size=16, verbose=0, callbacks=[callback])
    assert [x.name for x, _ in callback.bindings] == ["hidden"]
    assert int(callback.bindings[0][1].steps.numpy()) == 2
    with pytest.raises(ValueError, match=f"'{name}'.*{reason}"):
        SynapticScalingCallback(layers=[name]).set_model(model)


def test_rnn_model_scales_its_dense_layers_around_the_recurrent_one():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 3))
    h = keras.layers.TimeDistributed(keras.layers.Dense(6, activation="relu"))(inputs)
    h = keras.layers.LSTM(4, name="lstm")(h)
    h = keras.layers.Dense(5, activation="relu", name="head")(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    model.compile(keras.optimizers.SGD(0.01), LOSS)
    callback = SynapticScalingCallback(**FAST)
    x, y = noise((5, 3), n=32, classes=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=16, verbose=0, callbacks=[callback])
    names = [x.name for x, _ in callback.bindings]
    assert len(names) == 2 and names[1] == "head"
    assert all(int(s.steps.numpy()) == 2 for _, s in callback.bindings)
    assert any("'lstm' (recurrent" in str(w.message) for w in caught)


def test_time_distributed_counts_alike_with_unknown_time_steps():
    # With no static time length Keras maps the inner layer over time
    # (vectorized); the statistics must be those of the unrolled loop.
    x, y = noise((4, 8), n=48)
    results = []
    for shape in ((4, 8), (None, 8)):
        keras.utils.set_random_seed(0)
        inputs = keras.Input(shape)
        dense = keras.layers.Dense(6, activation="relu", name="scaled")
        h = keras.layers.TimeDistributed(dense)(inputs)
        h = keras.layers.GlobalAveragePooling1D()(h)
        model = keras.Model(inputs, keras.layers.Dense(3)(h))
        model.compile(keras.optimizers.SGD(0.0), LOSS)
        callback = SynapticScalingCallback(**FAST)
        model.fit(x, y, batch_size=16, shuffle=False, verbose=0,
                  callbacks=[callback])  # fmt: skip
        [(_, state)] = callback.bindings
        assert int(state.steps.numpy()) == 3
        results.append((state.activity.numpy(), state.log_gain.numpy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)
    assert np.ptp(results[0][1]) > 0.05
