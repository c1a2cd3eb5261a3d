"""Repeated `fit` calls with one callback: no retrace, same result, no leftovers.

A loop of `fit(epochs=1)` calls is a common Keras habit (and what keras-tuner
continuations and `BackupAndRestore` resumes do): with the same callback on
the same model, later fits reuse the compiled train function of the first.
"""

import keras
import pytest
import tensorflow as tf
from homeostasis_testing import assert_bit_equal
from homeostasis_testing import compiled
from homeostasis_testing import noise
from homeostasis_testing import snapshot

from keras_homeostasis import SynapticScalingCallback

FAST = dict(warmup=0, momentum=0.0, rate=0.5, max_step=0.1)


class TraceCounter(keras.layers.Layer):
    """Identity layer counting how often its call is traced into a graph."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.traces = 0

    def call(self, inputs, training=None):
        if training and not tf.executing_eagerly():
            self.traces += 1
        return inputs


def counted_model(seed=0):
    keras.utils.set_random_seed(seed)
    counter = TraceCounter(name="counter")
    model = keras.Sequential(
        [
            keras.Input((8,)),
            counter,
            keras.layers.Dense(6, activation="relu", name="hidden0"),
            keras.layers.Dense(5, activation="relu", name="hidden1"),
            keras.layers.Dense(3, name="output"),
        ]
    )
    return compiled(model), counter


def fit(model, callbacks, epochs=1, **kwargs):
    x, y = noise((8,), n=64)
    return model.fit(
        x, y, epochs=epochs, batch_size=16, shuffle=False, verbose=0,
        callbacks=list(callbacks), **kwargs,
    )  # fmt: skip


def steps(callback):
    return [int(state.steps.numpy()) for _, state in callback.bindings]


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_later_fits_with_the_same_callback_do_not_retrace(jit_compile):
    model, counter = counted_model()
    model.compile(model.optimizer, model.loss, jit_compile=jit_compile)
    callback = SynapticScalingCallback(**FAST)
    fit(model, [callback])
    traced = counter.traces
    assert traced >= 1
    for _ in range(3):
        fit(model, [callback])
    assert counter.traces == traced
    assert steps(callback) == [16, 16]


def test_one_fit_per_epoch_matches_one_fit_of_all_epochs():
    reference, _ = counted_model()
    fit(reference, [SynapticScalingCallback(**FAST)], epochs=3)
    model, _ = counted_model()
    callback = SynapticScalingCallback(**FAST)
    for _ in range(3):
        fit(model, [callback])
    assert_bit_equal(snapshot(model), snapshot(reference))


def test_a_plain_fit_between_scaled_fits_is_not_scaled():
    model, counter = counted_model()
    callback = SynapticScalingCallback(**FAST)
    fit(model, [callback])
    before = [state.log_gain.numpy().copy() for _, state in callback.bindings]
    fit(model, [])
    assert steps(callback) == [4, 4]
    after = [state.log_gain.numpy() for _, state in callback.bindings]
    assert all((a == b).all() for a, b in zip(before, after))
    traced = counter.traces
    fit(model, [callback])
    assert steps(callback) == [8, 8]
    # The hooked train function was kept: the third fit did not retrace.
    assert counter.traces == traced


def test_a_recompiled_model_is_traced_again_and_still_scaled():
    model, counter = counted_model()
    callback = SynapticScalingCallback(**FAST)
    fit(model, [callback])
    traced = counter.traces
    model.compile(keras.optimizers.SGD(0.01), model.loss)
    fit(model, [callback])
    assert counter.traces > traced
    assert steps(callback) == [8, 8]


def test_validation_is_not_retraced_by_later_fits():
    model, counter = counted_model()
    callback = SynapticScalingCallback(**FAST)
    validation = noise((8,), n=32, seed=1)
    fit(model, [callback], validation_data=validation)
    evaluate = model.test_function
    fit(model, [callback], validation_data=validation)
    assert model.test_function is evaluate
