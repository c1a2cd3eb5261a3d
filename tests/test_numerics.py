"""Numerics: non-finite batches, dead units, float16 extremes, NaN termination."""

import inspect
import math

import keras
import numpy as np
import pytest
from homeostasis_testing import assert_bit_equal
from homeostasis_testing import compiled
from homeostasis_testing import model_of
from homeostasis_testing import noise
from homeostasis_testing import snapshot
from homeostasis_testing import state_arrays
from homeostasis_testing import states

from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis.layers import HomeostaticDense
from keras_homeostasis.settings import validate_settings

FAST = dict(warmup=0, momentum=0.5, rate=0.5, max_step=0.1)
TRACES = ("activity", "firing_rate", "log_gain", "steps")


def fit(model, x, y, callbacks=(), epochs=1):
    model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=16,
        shuffle=False,
        verbose=0,
        callbacks=list(callbacks),
    )


def all_finite(arrays):
    return all(np.all(np.isfinite(a)) for a in arrays.values())


def poisoned(bad, n=64, row=40):
    """Inputs whose third batch of 16 holds one non-finite value."""
    x, y = noise((8,), n=n)
    x[row, 3] = bad
    return x, y


class StateAt(keras.callbacks.Callback):
    """Keeps a snapshot of the homeostatic state after batch `batch`."""

    def __init__(self, batch):
        super().__init__()
        self.batch, self.saved = batch, None

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.batch:
            self.saved = {
                layer.name: state_arrays(state) for layer, state in states(self.model)
            }


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
def test_non_finite_forward_pass_is_not_counted(bad):
    layer = HomeostaticDense(4, activation="relu")
    layer(np.ones((2, 8), "float32"), training=True)
    before = layer.homeostasis.accumulator.numpy().copy()
    x = np.ones((4, 8), "float32")
    x[2, 5] = bad
    layer(x, training=True)
    np.testing.assert_array_equal(layer.homeostasis.accumulator.numpy(), before)


@pytest.mark.parametrize(
    "homeostatic", [False, "held", True], ids=["callback", "held", "homeostatic_layers"]
)
@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
def test_loss_scale_optimizer_skips_the_bad_step_and_the_state_stays_finite(
    bad, homeostatic
):
    x, y = poisoned(bad)
    layers = homeostatic is True
    settings = FAST if layers else {}
    model = model_of("Dense", homeostatic=layers, **settings)
    compiled(model, keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1)))
    held = {"center_inputs": True, "hold_norms": True} if homeostatic else {}
    callbacks = [] if layers else [SynapticScalingCallback(**FAST, **held)]
    fit(model, x, y, callbacks)
    assert all_finite(snapshot(model, optimizer=False))
    # Three finite batches: three steps; the skipped one changed nothing.
    assert [int(s.steps.numpy()) for _, s in states(model)] == [3, 3]
    for _, state in states(model):
        if state.held is not None:
            assert np.all(np.isfinite(state.held.length.numpy()))
            assert np.all(np.isfinite(state.held.previous.numpy()))


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
def test_state_survives_a_step_that_poisons_the_weights(bad):
    x, y = poisoned(bad, row=56)  # the last batch
    model = compiled(model_of("Dense"), keras.optimizers.SGD(0.1))
    saved = StateAt(batch=2)
    fit(model, x, y, [SynapticScalingCallback(**FAST), saved])
    assert not np.all(np.isfinite(model.layers[0].kernel.numpy()))
    for layer, state in states(model):
        now = state_arrays(state)
        assert all_finite(now)
        for name in TRACES:
            np.testing.assert_array_equal(now[name], saved.saved[layer.name][name])
        assert np.all(now["factor"] == 1.0) and np.all(now["shift"] == 0.0)


@keras.ops.custom_gradient
def _nan_gradient_identity(x):
    def grad(*args, upstream=None):
        return (args[0] if args else upstream) * math.nan

    return x, grad


class NanGradient(keras.regularizers.Regularizer):
    """A penalty that is 0 in the forward pass and has a NaN gradient."""

    def __call__(self, weights):
        return 0.0 * keras.ops.sum(_nan_gradient_identity(weights))


@pytest.mark.parametrize(
    "homeostatic", [False, True], ids=["callback", "homeostatic_layers"]
)
def test_a_non_finite_update_after_a_finite_forward_pass_leaves_the_state_finite(
    homeostatic,
):
    # The first step's forward pass is finite and its update poisons every
    # hidden kernel: that step counts; every later forward pass is dropped.
    x, y = noise((8,), n=64)
    settings = FAST if homeostatic else {}
    model = model_of(
        "Dense", homeostatic=homeostatic, kernel_regularizer=NanGradient(), **settings
    )
    compiled(model, keras.optimizers.SGD(0.1))
    callbacks = [] if homeostatic else [SynapticScalingCallback(**FAST)]
    fit(model, x, y, callbacks)
    assert not np.any(np.isfinite(model.get_layer("hidden0").kernel.numpy()))
    assert all(all_finite(state_arrays(state)) for _, state in states(model))
    assert [int(s.steps.numpy()) for _, s in states(model)] == [1, 1]


def test_a_dead_unit_is_revived_by_its_bias_with_finite_factors():
    x, y = noise((8,), n=256)
    model = compiled(model_of("Dense", hidden=(32,)))
    hidden = model.layers[0]
    bias = hidden.bias.numpy()
    bias[0] = -5.0  # unit 0 never fires on inputs in [0, 1)
    hidden.bias.assign(bias)
    assert np.all(hidden(x).numpy()[:, 0] == 0.0)
    callback = SynapticScalingCallback(bias_rate=0.2, **FAST)
    fit(model, x, y, [callback], epochs=3)
    state = hidden.homeostasis
    assert all_finite(state_arrays(state))
    # The bias rose toward its layer's offset (the other units fire about
    # half the time; this one pulls the layer's mean down by 1/32 of its
    # own): the unit fires again.
    assert hidden.bias.numpy()[0] > -4.0
    assert np.mean(hidden(x).numpy()[:, 0] > 0) > 0.2


@pytest.fixture
def mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy("float32")


def test_float16_activations_near_the_float16_maximum_do_not_overflow(
    mixed_precision,
):
    layer = HomeostaticDense(3, activation="relu", warmup=0)
    layer.build((None, 4))
    layer.kernel.assign(np.full((4, 3), 1.6e4, "float32"))  # outputs 6.4e4
    layer.bias.assign(np.zeros(3, "float32"))
    x = np.ones((128, 4), "float32")
    y = layer(x, training=True)
    assert y.dtype == "float16" and np.all(np.isfinite(keras.ops.convert_to_numpy(y)))
    packed = layer.homeostasis.accumulator.numpy()
    np.testing.assert_allclose(packed[:3], 128 * float(y[0, 0]), rtol=1e-6)
    state = layer.homeostasis
    state.update(state.accumulator.value, np.zeros(3, "f4"), validate_settings(**FAST))
    assert all_finite(state_arrays(state))
    activity = keras.ops.convert_to_numpy(
        state.estimates(validate_settings(**FAST))["activity"]
    )
    np.testing.assert_allclose(activity, float(y[0, 0]), rtol=1e-5)


class Poison(keras.callbacks.Callback):
    """Sets the output kernel to NaN at the start of `epoch`: the loss diverges."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.saved = epoch, None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.saved = snapshot(self.model)
            kernel = self.model.layers[-1].kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


@pytest.mark.skipif(
    "raise_error" not in inspect.signature(keras.callbacks.TerminateOnNaN).parameters,
    reason="TerminateOnNaN(raise_error=True) is new in Keras 3.13",
)
def test_terminate_on_nan_leaves_the_last_finite_backup(tmp_path):
    x, y = noise((8,), n=64)
    backup_dir = tmp_path / "backup"
    model = compiled(model_of("Dense"))
    poison = Poison(epoch=1)
    callbacks = [
        SynapticScalingCallback(**FAST),
        keras.callbacks.BackupAndRestore(backup_dir),
        poison,
        keras.callbacks.TerminateOnNaN(raise_error=True),
    ]
    with pytest.raises(RuntimeError):
        fit(model, x, y, callbacks, epochs=3)
    assert backup_dir.exists()
    assert all_finite(poison.saved)
    # A fresh model and callback restore the backup (epoch 1 of 1: no step).
    fresh = compiled(model_of("Dense", seed=1))
    scaling = SynapticScalingCallback(**FAST)
    restore = keras.callbacks.BackupAndRestore(backup_dir)
    fit(fresh, x, y, [scaling, restore], epochs=1)
    assert [int(s.steps.numpy()) for _, s in scaling.bindings] == [4, 4]
    assert_bit_equal(snapshot(fresh), poison.saved)
