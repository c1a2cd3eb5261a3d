"""Tests of `keras_homeostasis.lab.data.load_dataset`."""

import os

import numpy as np
import pytest

from keras_homeostasis.lab.data import SHARED_MNIST
from keras_homeostasis.lab.data import load_dataset


def test_digits_shapes_range_and_labels():
    (x_train, y_train), (x_test, y_test) = load_dataset("digits")
    assert x_train.shape == (1437, 8, 8, 1)
    assert x_test.shape == (360, 8, 8, 1)
    assert x_train.dtype == np.float32
    assert 0.0 <= x_train.min() and x_train.max() == 1.0
    assert y_train.dtype == np.int64
    assert set(np.unique(y_test)) == set(range(10))


def test_digits_split_is_deterministic_and_limit_cuts_training_only():
    (x_a, y_a), (xt_a, _) = load_dataset("digits")
    (x_b, y_b), (xt_b, _) = load_dataset("digits", limit=100)
    np.testing.assert_array_equal(x_a[:100], x_b)
    np.testing.assert_array_equal(y_a[:100], y_b)
    np.testing.assert_array_equal(xt_a, xt_b)


def _write_npz(path, x_dtype="uint8"):
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (20, 6, 6)).astype(x_dtype),
        y_train=rng.integers(0, 3, (20, 1)),
        x_test=rng.integers(0, 256, (10, 6, 6)).astype(x_dtype),
        y_test=rng.integers(0, 3, (10,)),
    )


def test_npz_in_keras_datasets_layout(tmp_path):
    path = tmp_path / "tiny.npz"
    _write_npz(path)
    (x_train, y_train), (x_test, y_test) = load_dataset(str(path), limit=5)
    assert x_train.shape == (5, 6, 6, 1) and x_test.shape == (10, 6, 6, 1)
    assert x_train.dtype == np.float32 and x_train.max() <= 1.0
    raw = np.load(path)
    np.testing.assert_allclose(x_test[..., 0], raw["x_test"] / 255.0, rtol=1e-6)
    assert y_train.shape == (5,) and y_train.dtype == np.int64


def test_npz_missing_keys_and_missing_file(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((2, 2)), y_train=np.zeros(2))
    with pytest.raises(ValueError, match="x_test"):
        load_dataset(str(bad))
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        load_dataset(str(tmp_path / "nothing.npz"))


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="`name_or_path`") as info:
        load_dataset("imagenet")
    assert "digits" in str(info.value) and "mnist" in str(info.value)
    assert "name_or_path='imagenet'" in str(info.value)


@pytest.mark.parametrize("limit, error", [(0, ValueError), (2.5, TypeError)])
def test_bad_limit_names_the_argument(limit, error):
    with pytest.raises(error, match="`limit`"):
        load_dataset("digits", limit=limit)


def test_tfds_failure_suggests_a_local_npz(tmp_path):
    # No download: an empty data folder makes TensorFlow Datasets fail at once,
    # the same path a failed download takes.
    with pytest.raises(RuntimeError, match="mnist") as info:
        load_dataset("mnist", data_dir=str(tmp_path), download=False)
    assert ".npz" in str(info.value)


@pytest.mark.mnist
def test_real_mnist_npz(mnist_path):
    (x_train, y_train), (x_test, y_test) = load_dataset(str(mnist_path), limit=64)
    assert x_train.shape == (64, 28, 28, 1) and x_test.shape == (10000, 28, 28, 1)
    assert 0.0 <= x_test.min() and 0.9 < x_test.max() <= 1.0
    assert set(np.unique(y_test)) == set(range(10))


@pytest.mark.mnist
def test_the_benchmarks_default_data_is_the_shared_mnist(mnist_path):
    # Found from the package, so a script run from any folder reads it.
    assert os.path.samefile(SHARED_MNIST, mnist_path)
