"""`distribute_compat`: the version guard, install and removal, and that the
patches leave single-process training bit-identical."""

import importlib

import keras
import pytest
import tensorflow as tf
from graph_inspection import data
from graph_inspection import mirrored
from graph_inspection import mlp
from homeostasis_testing import assert_bit_equal
from homeostasis_testing import snapshot

from keras_homeostasis import distribute_compat
from keras_homeostasis.synaptic_scaling_callback import SynapticScalingCallback

TRAINER = "keras.src.backend.tensorflow.trainer"


def patched_names():
    module = importlib.import_module(TRAINER)
    return (
        module.TensorFlowTrainer._maybe_symbolic_build.__name__,
        module.reduce_per_replica.__name__,
    )


@pytest.mark.parametrize(
    "version, expected",
    [("3.15.0", True), ("3.15.1", True), ("3.16.0", False), ("3.1.5", False)],
)
def test_only_keras_3_15_is_patched(version, expected):
    assert distribute_compat.needs_patch(version) is expected


@pytest.mark.skipif(
    not distribute_compat.needs_patch(), reason="the fixes apply to Keras 3.15 only"
)
def test_enable_installs_and_the_with_block_removes():
    assert not distribute_compat.is_enabled()
    original = patched_names()
    with distribute_compat.enable_multi_worker_fit():
        assert distribute_compat.is_enabled()
        assert patched_names() == (
            "_patched_maybe_symbolic_build",
            "_patched_reduce_per_replica",
        )
        # A nested call is a no-op and must not remove the outer patches.
        with distribute_compat.enable_multi_worker_fit():
            pass
        assert distribute_compat.is_enabled()
    assert not distribute_compat.is_enabled()
    assert patched_names() == original


def test_no_strategy_is_multi_worker_in_one_process():
    assert not distribute_compat.is_multi_worker(tf.distribute.get_strategy())
    assert not distribute_compat.is_multi_worker(mirrored())
    assert not distribute_compat.is_multi_worker(None)


def train_mirrored():
    strategy = mirrored()
    with strategy.scope():
        model = mlp(None)
    x, y = data(n=128)
    model.fit(
        x,
        y,
        batch_size=32,
        epochs=2,
        verbose=0,
        callbacks=[SynapticScalingCallback(warmup=1)],
    )
    return snapshot(model)


@pytest.mark.multi_device
def test_patches_leave_mirrored_training_unchanged():
    plain = train_mirrored()
    with distribute_compat.enable_multi_worker_fit():
        patched = train_mirrored()
    assert_bit_equal(plain, patched)
    keras.backend.clear_session()
