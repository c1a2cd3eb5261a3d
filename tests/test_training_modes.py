"""Which passes count: training vs inference, trainable, validation, custom loops."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from homeostasis_testing import INPUT_SHAPES
from homeostasis_testing import LOSS
from homeostasis_testing import assert_bit_equal
from homeostasis_testing import compiled
from homeostasis_testing import model_of
from homeostasis_testing import noise
from homeostasis_testing import snapshot
from homeostasis_testing import states

from keras_homeostasis import SynapticScalingCallback

FAST = dict(warmup=0, momentum=0.5, rate=0.5, max_step=0.1)


def data(kind, n=64):
    return noise(INPUT_SHAPES[kind], n=n)


def fit(model, x, y, callbacks=(), epochs=1, **kwargs):
    model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=16,
        shuffle=False,
        verbose=0,
        callbacks=list(callbacks),
        **kwargs,
    )


def build(kind, homeostatic):
    """A compiled model: homeostatic layers, or plain ones for the callback."""
    settings = FAST if homeostatic else {}
    return compiled(model_of(kind, homeostatic=homeostatic, **settings))


def state_snapshot(model):
    return {k: v for k, v in snapshot(model, optimizer=False).items() if "homeo" in k}


class Inference(keras.callbacks.Callback):
    """Runs every kind of inference pass in the middle of training."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            self.model(self.x[:8], training=False)
            self.model(self.x[:8])
            self.model.predict(self.x[:8], verbose=0)
            self.model.evaluate(self.x[:8], self.y[:8], verbose=0)


@pytest.mark.parametrize("kind", ["Dense", "Conv2D"])
def test_homeostatic_layers_count_only_training_passes(kind):
    x, y = data(kind)
    model = build(kind, True)
    fit(model, x, y)
    before = state_snapshot(model)
    model(x, training=False)
    model(x)
    model.predict(x, verbose=0)
    model.evaluate(x, y, verbose=0)
    assert_bit_equal(state_snapshot(model), before)
    model(x[:4], training=True)
    assert np.any(states(model)[0][1].accumulator.numpy() != 0.0)


@pytest.mark.parametrize("kind", ["Dense", "Conv2D"])
def test_evaluate_and_predict_after_fit_leave_the_callback_state(kind):
    x, y = data(kind)
    model = compiled(model_of(kind))
    callback = SynapticScalingCallback(**FAST)
    fit(model, x, y, callbacks=[callback], validation_data=(x[:16], y[:16]))
    before = state_snapshot(model)
    # The test function traced during fit (same batch shape) must not count.
    model.evaluate(x, y, batch_size=16, verbose=0)
    model.predict(x, batch_size=16, verbose=0)
    model(x, training=False)
    assert_bit_equal(state_snapshot(model), before)


@pytest.mark.parametrize(
    "homeostatic", [False, True], ids=["callback", "homeostatic_layers"]
)
def test_validation_inside_fit_does_not_change_the_result(homeostatic):
    x, y = data("Dense")
    results = []
    for validation_data in (None, (x[:32], y[:32])):
        model = build("Dense", homeostatic)
        callbacks = [] if homeostatic else [SynapticScalingCallback(**FAST)]
        fit(model, x, y, callbacks, epochs=2, validation_data=validation_data)
        results.append(snapshot(model))
    assert_bit_equal(results[0], results[1])


@pytest.mark.parametrize("kind", ["Dense", "Conv2D"])
def test_inference_by_other_callbacks_during_fit_is_not_counted(kind):
    # Keras passes no `training` flag to Conv layers: the callback relays the
    # model call's flag to them.
    x, y = data(kind)
    results = []
    for extra in ([], [Inference(x, y)]):
        model = compiled(model_of(kind))
        fit(model, x, y, [SynapticScalingCallback(**FAST), *extra])
        results.append(snapshot(model))
    assert_bit_equal(results[0], results[1])


def test_trainable_false_freezes_homeostatic_layers():
    x, y = data("Dense")
    model = model_of("Dense", homeostatic=True, **FAST)
    model.layers[0].trainable = False
    compiled(model)
    fit(model, x, y)
    assert int(model.layers[0].homeostasis.steps.numpy()) == 0
    assert np.all(model.layers[0].homeostasis.accumulator.numpy() == 0.0)
    assert int(model.layers[1].homeostasis.steps.numpy()) == 4


def test_callback_refuses_to_scale_a_frozen_layer_by_name():
    model = model_of("Dense")
    model.layers[0].trainable = False
    compiled(model)
    with pytest.raises(ValueError, match="hidden0"):
        fit(model, *data("Dense"), [SynapticScalingCallback(layers=["hidden0"])])


@pytest.mark.parametrize(
    "kind, homeostatic",
    [("Conv2D", False), ("Dense", True)],
    ids=["callback_conv", "homeostatic_layers_dense"],
)
def test_custom_training_loop_matches_fit(kind, homeostatic):
    x, y = data(kind)
    reference = build(kind, homeostatic)
    callbacks = [] if homeostatic else [SynapticScalingCallback(**FAST)]
    fit(reference, x, y, callbacks, epochs=2)

    model = build(kind, homeostatic)
    callback = None if homeostatic else SynapticScalingCallback(**FAST)
    optimizer = model.optimizer

    @tf.function
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = LOSS(yb, model(xb, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    if callback is not None:
        callback.set_model(model)
        callback.on_train_begin()
    for _ in range(2):
        for i in range(0, len(x), 16):
            train_step(x[i : i + 16], y[i : i + 16])
            model(x[:8], training=False)  # an evaluation pass: not counted
    if callback is not None:
        callback.on_train_end()
    assert all(int(s.steps.numpy()) == 8 for _, s in states(model))
    assert_bit_equal(snapshot(model), snapshot(reference))
