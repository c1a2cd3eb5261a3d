"""Saving and resuming: .keras files, weights checkpoints, BackupAndRestore."""

import keras
import numpy as np
import pytest
from homeostasis_testing import assert_bit_equal
from homeostasis_testing import compiled
from homeostasis_testing import digits
from homeostasis_testing import model_of
from homeostasis_testing import noise
from homeostasis_testing import snapshot
from homeostasis_testing import states

from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis.layers import HomeostaticConv2D
from keras_homeostasis.layers import HomeostaticDense

FAST = dict(warmup=0, momentum=0.5, rate=0.5, max_step=0.1)


def fit(model, x, y, callbacks=(), epochs=1, **kwargs):
    model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=32,
        shuffle=False,
        verbose=0,
        callbacks=list(callbacks),
        **kwargs,
    )


def homeostatic_cnn():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            HomeostaticConv2D(4, 3, activation="relu", name="conv", **FAST),
            keras.layers.Flatten(),
            HomeostaticDense(8, activation="relu", name="dense", **FAST),
            keras.layers.Dense(10, name="output"),
        ]
    )
    return compiled(model)


def test_keras_file_round_trip_mid_training_without_custom_objects(tmp_path):
    x, y = digits(192)
    x = x[..., None]
    model = homeostatic_cnn()
    fit(model, x, y)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [type(layer) for layer in loaded.layers] == [
        type(layer) for layer in model.layers
    ]
    assert int(states(loaded)[0][1].steps.numpy()) == 6
    assert_bit_equal(snapshot(loaded), snapshot(model))
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    fit(model, x, y)
    fit(loaded, x, y)
    assert int(states(loaded)[0][1].steps.numpy()) == 12
    assert_bit_equal(snapshot(loaded), snapshot(model))


def callback_model(seed=0):
    return compiled(model_of("Dense", seed=seed))


def resume_from_weights(path, x, y):
    """A fresh model and callback, resumed from a weights file, then trained."""
    model = callback_model(seed=1)  # different initial weights: all must load
    callback = SynapticScalingCallback(**FAST)
    callback.set_model(model)
    model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    return model, callback


def test_save_weights_includes_the_callback_state(tmp_path):
    x, y = noise((8,), n=128)
    model = callback_model()
    fit(model, x, y, [SynapticScalingCallback(**FAST)])
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    resumed, callback = resume_from_weights(path, x, y)
    assert [int(s.steps.numpy()) for _, s in callback.bindings] == [4, 4]
    assert_bit_equal(snapshot(resumed), snapshot(model))
    fit(model, x, y, [SynapticScalingCallback(**FAST)])
    fit(resumed, x, y, [callback])
    assert_bit_equal(snapshot(resumed), snapshot(model))


def test_model_checkpoint_weights_only_restores_the_state(tmp_path):
    x, y = noise((8,), n=128)
    model = callback_model()
    path = tmp_path / "ckpt.weights.h5"
    checkpoint = keras.callbacks.ModelCheckpoint(path, save_weights_only=True)
    fit(model, x, y, [SynapticScalingCallback(**FAST), checkpoint], epochs=2)
    resumed, callback = resume_from_weights(path, x, y)
    assert [int(s.steps.numpy()) for _, s in callback.bindings] == [8, 8]
    assert_bit_equal(snapshot(resumed), snapshot(model))


def test_loading_weights_before_set_model_skips_the_state(tmp_path):
    # The documented order matters: without set_model first, the fresh model
    # has no state to load into and the saved statistics are ignored.
    x, y = noise((8,), n=128)
    model = callback_model()
    fit(model, x, y, [SynapticScalingCallback(**FAST)])
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    fresh = callback_model(seed=1)
    fresh.load_weights(path)
    assert not states(fresh)
    callback = SynapticScalingCallback(**FAST)
    callback.set_model(fresh)
    assert [int(s.steps.numpy()) for _, s in callback.bindings] == [0, 0]


def test_keras_file_of_a_callback_model_restores_state_through_load_weights(
    tmp_path,
):
    x, y = noise((8,), n=128)
    model = callback_model()
    fit(model, x, y, [SynapticScalingCallback(**FAST)])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # a plain model: no custom objects
    assert not states(loaded)
    callback = SynapticScalingCallback(**FAST)
    callback.set_model(loaded)
    loaded.load_weights(path)
    assert_bit_equal(snapshot(loaded), snapshot(model))


class Interrupt(keras.callbacks.Callback):
    """Raises at the start of `epoch`, as a killed job would stop."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


@pytest.fixture(scope="module")
def uninterrupted():
    x, y = noise((8,), n=128)
    model = callback_model()
    fit(model, x, y, [SynapticScalingCallback(**FAST)], epochs=3)
    return snapshot(model)


@pytest.mark.parametrize("order", ["scaling_first", "backup_first"])
@pytest.mark.parametrize("same_model", [False, True], ids=["fresh_model", "same"])
def test_backup_and_restore_resume_is_bit_identical(
    tmp_path, uninterrupted, order, same_model
):
    x, y = noise((8,), n=128)

    def callbacks():
        scaling = SynapticScalingCallback(**FAST)
        backup = keras.callbacks.BackupAndRestore(tmp_path / "backup")
        return [scaling, backup] if order == "scaling_first" else [backup, scaling]

    model = callback_model()
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(model, x, y, callbacks() + [Interrupt(2)], epochs=3)
    assert (tmp_path / "backup").exists()
    if not same_model:
        model = callback_model(seed=1)
    fit(model, x, y, callbacks(), epochs=3)
    assert int(model.optimizer.iterations.numpy()) == 12
    assert_bit_equal(snapshot(model), uninterrupted)
    assert not (tmp_path / "backup").exists()
