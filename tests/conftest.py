"""Shared test setup: quiet TensorFlow, two logical CPUs, a seed per test."""

import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pathlib  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPU devices so MirroredStrategy tests run on a single CPU. This
# must happen before any TensorFlow op runs.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

MNIST = (
    pathlib.Path(__file__).resolve().parents[1].parent
    / "shared"
    / "datasets"
    / "mnist.npz"
)


@pytest.fixture(autouse=True)
def seed():
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture
def mnist_path():
    if not MNIST.exists():
        pytest.skip(f"real MNIST not found at {MNIST} (../shared/datasets)")
    return MNIST


@pytest.fixture(scope="module")
def own_heap():
    """Sets aside the objects earlier test modules left, for one module.

    keras-tuner collects garbage before every trial, and
    `keras.backend.clear_session()` (once per `compare` or `continual` run)
    does too. A full collection walks every object alive, and after a few
    hundred tests that takes seconds: most of a tuning test's time in the
    whole suite. Frozen objects are skipped by collections until the module
    ends, so those collections walk only what the module itself made.
    """
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()
