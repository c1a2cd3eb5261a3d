"""`steps_per_execution` under MirroredStrategy (two logical CPUs).

Keras 3.11-3.15 crash on `steps_per_execution > 1` under any strategy with
several replicas (keras-team/keras#19246); the scaling callback says so before
training starts instead of failing in the middle of Keras' graph.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from graph_inspection import data
from graph_inspection import mirrored
from graph_inspection import mlp

from keras_homeostasis import distribute_compat
from keras_homeostasis.synaptic_scaling_callback import SynapticScalingCallback

pytestmark = pytest.mark.multi_device


def distributed(steps_per_execution, strategy=None):
    strategy = strategy or mirrored()
    with strategy.scope():
        model = mlp(None)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            steps_per_execution=steps_per_execution,
        )
    return model


def fit(model, callbacks):
    x, y = data()
    model.fit(x, y, batch_size=16, epochs=1, callbacks=callbacks, verbose=0)


def test_callback_names_the_keras_issue_before_training():
    model = distributed(2)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"keras-team/keras#19246") as error:
        fit(model, [SynapticScalingCallback()])
    assert "steps_per_execution=2" in str(error.value)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


@pytest.mark.skipif(
    not distribute_compat.crashes_on_steps_per_execution(),
    reason="checked for Keras 3.11-3.15 only",
)
def test_keras_alone_crashes_there():
    # If this stops raising, Keras fixed #19246: relax the check.
    with pytest.raises(tf.errors.InvalidArgumentError):
        fit(distributed(2), [])


def test_one_step_per_execution_trains():
    model = distributed(1)
    callback = SynapticScalingCallback(warmup=1)
    fit(model, [callback])
    _, state = callback.bindings[0]
    assert int(state.steps.numpy()) == 4


def test_one_replica_strategy_allows_several_steps_per_execution():
    model = distributed(2, tf.distribute.MirroredStrategy(["/cpu:0"]))
    callback = SynapticScalingCallback(warmup=1)
    fit(model, [callback])
    _, state = callback.bindings[0]
    assert int(state.steps.numpy()) == 4
