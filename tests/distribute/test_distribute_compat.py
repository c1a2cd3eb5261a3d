"""`distribute_compat`: the version guard, install and removal, and that the
patches leave single-process training bit-identical."""

import importlib
import types
import warnings

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
    [
        ("3.11.0", True),
        ("3.13.2", True),
        ("3.15.1", True),
        ("3.10.0", False),
        ("3.16.0", False),
        ("3.16.0.dev2026120301", False),
        ("4.0.0", False),
        ("nightly", False),
    ],
)
def test_only_the_keras_releases_the_patches_were_written_for(version, expected):
    assert distribute_compat.needs_patch(version) is expected


@pytest.fixture
def unknown_keras(monkeypatch):
    monkeypatch.setattr(keras, "__version__", "3.99.0")
    monkeypatch.setattr(distribute_compat, "_warned", set())


def test_an_unknown_keras_is_not_patched_and_warned_about_once(unknown_keras):
    original = patched_names()
    with pytest.warns(UserWarning, match=r"not applied to Keras 3\.99\.0") as caught:
        with distribute_compat.enable_multi_worker_fit():
            assert not distribute_compat.is_enabled()
            assert patched_names() == original
    assert len(caught) == 1
    assert "3.11-3.15" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        distribute_compat.enable_multi_worker_fit()
    assert patched_names() == original


def test_only_a_keras_known_to_crash_is_refused_several_steps(monkeypatch):
    replicas = types.SimpleNamespace(num_replicas_in_sync=2)
    model = types.SimpleNamespace(steps_per_execution=4, distribute_strategy=replicas)
    monkeypatch.setattr(keras, "__version__", "3.99.0")
    distribute_compat.check_steps_per_execution(model)  # Keras may have fixed it
    monkeypatch.setattr(keras, "__version__", "3.15.1")
    with pytest.raises(ValueError, match="keras-team/keras#19246"):
        distribute_compat.check_steps_per_execution(model)


@pytest.mark.skipif(
    not distribute_compat.needs_patch(),
    reason="the fixes apply to Keras 3.11-3.15 only",
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
