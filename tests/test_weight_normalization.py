"""Tests of the `WeightNormalization` wrapper."""

import keras
import numpy as np
import pytest

from keras_homeostasis import WeightNormalization


def _norms(kernel):
    return np.sqrt(np.sum(np.square(kernel), axis=tuple(range(kernel.ndim - 1))))


LAYERS = {
    "dense": (lambda: keras.layers.Dense(5, activation="relu"), (7,)),
    "conv1d": (lambda: keras.layers.Conv1D(4, 3, activation="relu"), (9, 2)),
    "conv2d": (lambda: keras.layers.Conv2D(4, 3, padding="same"), (6, 6, 2)),
    "conv3d": (lambda: keras.layers.Conv3D(3, 2), (4, 4, 4, 1)),
}


@pytest.mark.parametrize("kind", LAYERS)
def test_initially_computes_the_wrapped_layer(kind):
    make, shape = LAYERS[kind]
    wrapped = WeightNormalization(make())
    x = np.random.default_rng(0).normal(size=(3,) + shape).astype("float32")
    y = wrapped(x)
    np.testing.assert_allclose(wrapped.g.numpy(), _norms(wrapped.layer.kernel.numpy()))
    plain = make()
    plain.build((None,) + shape)
    plain.set_weights(wrapped.layer.get_weights())
    np.testing.assert_allclose(y, plain(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", LAYERS)
def test_normalized_kernel_has_norm_g_after_training(kind):
    make, shape = LAYERS[kind]
    model = keras.Sequential(
        [
            keras.Input(shape),
            WeightNormalization(make()),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    model.compile(keras.optimizers.SGD(0.1), "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16,) + shape).astype("float32")
    y = rng.normal(size=(16, 2)).astype("float32")
    layer = model.layers[0]
    g_before = layer.g.numpy().copy()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert not np.allclose(layer.g.numpy(), g_before)
    np.testing.assert_allclose(
        _norms(keras.ops.convert_to_numpy(layer.normalized_kernel())),
        layer.g.numpy(),
        rtol=1e-5,
    )


def test_output_is_invariant_to_the_scale_of_v():
    layer = WeightNormalization(keras.layers.Dense(4))
    x = np.random.default_rng(1).normal(size=(5, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    layer.layer.kernel.assign(layer.layer.kernel * 7.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), y, rtol=1e-5)


def test_save_and_load_without_custom_objects(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            WeightNormalization(keras.layers.Conv2D(4, 3, activation="relu")),
            keras.layers.Flatten(),
            WeightNormalization(keras.layers.Dense(6, activation="relu"), name="wn"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((32, 8, 8, 1)).astype("float32")
    model.fit(x, rng.integers(0, 3, 32), epochs=1, verbose=0)
    path = tmp_path / "wn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("wn"), WeightNormalization)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(
        model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    )


def test_config_round_trip():
    layer = WeightNormalization(keras.layers.Dense(3, use_bias=False), name="w")
    clone = WeightNormalization.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.layer.units == 3 and not clone.layer.use_bias


def test_rejects_unsupported_layers():
    with pytest.raises(TypeError, match="`layer`"):
        WeightNormalization(keras.layers.LSTM(3))
