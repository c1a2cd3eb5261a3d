"""UsageReport.from_model on every kind of model: each unit's real output.

A layer without activation followed by an activation layer is measured
after that activation; a subclassed model's layers by their own output.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_homeostasis import metrics


def digits(n=300):
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data[:n] / 16.0).astype("float32"), d.target[:n].astype("int32")


def trained(model, x, y):
    """`model` after a short real fit on the digits (its units now differ)."""
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    return model


def expected(y):
    y = keras.ops.convert_to_numpy(y).reshape(-1, y.shape[-1])
    activity = np.abs(y).mean(axis=0)
    return activity, metrics.usage_entropy(activity), (y > 0).sum(axis=0) == 0


def check_report(report, name, post, pre):
    """`name` is measured on `post` (real outputs), not on `pre`."""
    activity, entropy, dead = expected(post)
    np.testing.assert_allclose(report.activity[name], activity, rtol=1e-5)
    assert report.layers[name]["usage_entropy"] == pytest.approx(entropy, 1e-5)
    assert report.layers[name]["dead_fraction"] == pytest.approx(dead.mean())
    # The measurement before the activation differs (the old behaviour).
    assert expected(pre)[1] != pytest.approx(entropy, abs=1e-3)


def test_functional_dense_is_measured_after_its_relu_layer():
    x, y = digits()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    z = keras.layers.Dense(16, name="hidden")(inputs)
    h = keras.layers.ReLU(name="relu")(z)
    outputs = keras.layers.Dense(10, activation="softmax", name="out")(h)
    model = trained(keras.Model(inputs, outputs), x, y)
    report = metrics.UsageReport.from_model(model, x)
    assert list(report.layers) == ["hidden"]
    pre, post = keras.Model(inputs, [z, h])(x)
    check_report(report, "hidden", post, pre)


def test_sequential_conv_is_measured_after_dropout_and_activation():
    x, y = digits()
    x = x.reshape(-1, 8, 8, 1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, name="conv"),
            keras.layers.Dropout(0.1),
            keras.layers.Activation("relu", name="act"),
            keras.layers.Conv2D(6, 3, name="conv2"),
            keras.layers.LeakyReLU(0.2, name="leaky"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax", name="out"),
        ]
    )
    model = trained(model, x, y)
    report = metrics.UsageReport.from_model(model, x, batch_size=64)
    assert list(report.layers) == ["conv", "conv2"]
    probe = keras.Model(
        model.inputs,
        [model.get_layer(n).output for n in ("conv", "act", "conv2", "leaky")],
    )
    conv, act, conv2, leaky = probe(x)
    check_report(report, "conv", act, conv)
    activity, _, _ = expected(leaky)
    np.testing.assert_allclose(report.activity["conv2"], activity, rtol=1e-5)
    assert np.abs(expected(conv2)[0] - activity).max() > 1e-3


def test_nested_model_layers_are_measured_after_their_activation():
    x, y = digits()
    keras.utils.set_random_seed(0)
    inner_in = keras.Input((64,))
    z = keras.layers.Dense(16, name="inner_dense")(inner_in)
    h = keras.layers.Activation("relu", name="inner_relu")(z)
    inner = keras.Model(inner_in, h, name="block")
    inputs = keras.Input((64,))
    outputs = keras.layers.Dense(10, activation="softmax", name="out")(inner(inputs))
    model = trained(keras.Model(inputs, outputs), x, y)
    report = metrics.UsageReport.from_model(model, (x, y))
    assert list(report.layers) == ["inner_dense"]
    pre, post = keras.Model(inner_in, [z, h])(x)
    check_report(report, "inner_dense", post, pre)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(16, activation="relu", name="hidden")
        self.out = keras.layers.Dense(10, activation="softmax", name="out")

    def call(self, x):
        return self.out(self.hidden(x))


def test_subclassed_model_layers_are_measured_by_their_own_output():
    x, y = digits()
    keras.utils.set_random_seed(0)
    model = trained(Subclassed(), x, y)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(100)
    report = metrics.UsageReport.from_model(model, dataset)
    assert list(report.layers) == ["hidden"]
    activity, entropy, dead = expected(model.hidden(x))
    np.testing.assert_allclose(report.activity["hidden"], activity, rtol=1e-5)
    assert report.layers["hidden"]["usage_entropy"] == pytest.approx(entropy, 1e-5)


def small_model():
    return keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, activation="relu")]
        + [keras.layers.Dense(2)]
    )


@pytest.mark.parametrize(
    "data, match",
    [
        (None, "`data`.*Received: data=None"),
        ([], r"`data`.*Received: data=\[\]"),
        (np.zeros((0, 3), "float32"), r"`data`.*shape \(0, 3\)"),
        (tf.data.Dataset.from_tensor_slices(np.zeros((0, 3), "float32")), "`data`"),
    ],
    ids=["none", "empty_list", "empty_array", "empty_dataset"],
)
def test_empty_or_missing_data_is_a_clear_error(data, match):
    with pytest.raises(ValueError, match=match):
        metrics.UsageReport.from_model(small_model(), data)


def test_unknown_layer_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"layers=\['nope'\]"):
        metrics.UsageReport.from_model(
            small_model(), np.ones((4, 3), "float32"), layers=["nope"]
        )


def test_new_layer_kinds_are_measured_and_unclear_einsums_are_not():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 6))
    h = keras.layers.EinsumDense("abc,cd->abd", (4, 5), name="einsum")(inputs)
    h = keras.layers.ReLU()(h)
    h = keras.layers.EinsumDense("abc,cde->abde", (4, 2, 3), name="unclear")(h)
    h = keras.layers.Reshape((4, 6))(h)
    h = keras.layers.Conv1DTranspose(3, 2, activation="relu", name="transpose")(h)
    outputs = keras.layers.Dense(2, name="out")(keras.layers.Flatten()(h))
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(size=(32, 4, 6)).astype("float32")
    report = metrics.UsageReport.from_model(model, x)
    assert list(report.layers) == ["einsum", "transpose"]
    assert report.layers["einsum"]["units"] == 5
    assert report.layers["transpose"]["units"] == 3
    post = keras.Model(inputs, model.layers[2].output)(x)
    pre = keras.Model(inputs, model.get_layer("einsum").output)(x)
    activity = expected(post)[0]
    np.testing.assert_allclose(report.activity["einsum"], activity, rtol=1e-5)
    assert np.abs(expected(pre)[0] - activity).max() > 1e-2  # after the ReLU
