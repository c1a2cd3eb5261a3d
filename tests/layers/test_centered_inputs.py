"""Homeostatic layers with `center_inputs=True`: each computes on its inputs
minus a bias-corrected trace of their mean, so a unit's offset is its bias."""

import keras
import numpy as np
import pytest

from keras_homeostasis import layers as homeostatic_layers
from keras_homeostasis import rule

# kind: (constructor args, input shape with batch, axes the mean is over)
CASES = {
    "Dense": ((4,), (16, 5), (0,)),
    "Conv1D": ((4, 2), (6, 6, 2), (0, 1)),
    "Conv2D": ((4, 2), (6, 5, 5, 2), (0, 1, 2)),
    "Conv3D": ((4, 2), (6, 4, 4, 4, 1), (0, 1, 2, 3)),
}


def make(kind, **kwargs):
    args, _, _ = CASES[kind]
    cls = getattr(homeostatic_layers, "Homeostatic" + kind)
    return cls(*args, center_inputs=True, **kwargs)


def inputs_of(kind, seed=0, offset=3.0):
    _, shape, _ = CASES[kind]
    rng = np.random.default_rng(seed)
    return (offset + rng.normal(size=shape)).astype("float32")


def uncentered(layer, x):
    """What the same layer computes on `x` as it is."""
    plain = type(layer)(**{**layer.get_config(), "center_inputs": False})
    plain.build(x.shape)
    plain.kernel.assign(layer.kernel)
    plain.bias.assign(layer.bias)
    return plain(x)


@pytest.mark.parametrize("kind", list(CASES))
def test_a_training_pass_centers_on_its_inputs_mean(kind):
    x = inputs_of(kind)
    layer = make(kind)
    # Before any training pass nothing is traced: the plain layer's output.
    np.testing.assert_allclose(layer(x), uncentered(layer, x), rtol=1e-5, atol=1e-5)
    layer(x, training=True)
    mean = x.mean(axis=CASES[kind][2], keepdims=True)
    np.testing.assert_allclose(
        layer.input_mean.trace.numpy() / 0.01, mean.ravel(), 1e-5
    )
    np.testing.assert_allclose(
        layer(x), uncentered(layer, x - mean), rtol=1e-4, atol=1e-4
    )


def test_the_trace_is_bias_corrected_and_moves_only_in_training():
    x, later = inputs_of("Dense"), inputs_of("Dense", seed=1, offset=-1.0)
    layer = make("Dense")
    layer(x, training=True)
    for training in (None, False):
        layer(later, training=training)
    assert float(layer.input_mean.steps.numpy()) == 1.0
    layer(later, training=True)
    m = rule.INPUT_MOMENTUM
    expected = (m * (1 - m) * x.mean(0) + (1 - m) * later.mean(0)) / (1 - m**2)
    mean = layer.input_mean.mean()
    np.testing.assert_allclose(mean, expected, rtol=1e-5)


def test_a_non_finite_batch_leaves_the_trace_unchanged():
    x = inputs_of("Dense")
    layer = make("Dense")
    layer(x, training=True)
    before = layer.input_mean.trace.numpy()
    bad = x.copy()
    bad[0, 0] = np.nan
    layer(bad, training=True)
    np.testing.assert_array_equal(layer.input_mean.trace.numpy(), before)
    assert float(layer.input_mean.steps.numpy()) == 1.0


@pytest.mark.parametrize("kind", ["Dense", "Conv1D", "Conv2D"])
def test_a_plain_layer_with_the_effective_bias_computes_the_same(kind):
    x = inputs_of(kind)
    layer = make(kind, activation="relu", scale_invariant=True)
    layer(x, training=True)
    plain_type = getattr(keras.layers, kind)
    plain = plain_type(*CASES[kind][0], activation="relu")
    plain.build(x.shape)
    plain.set_weights([np.asarray(layer.effective_kernel()), layer.effective_bias()])
    np.testing.assert_allclose(plain(x), layer(x), rtol=1e-5, atol=1e-5)


def test_a_padded_centered_convolution_has_no_plain_bias_and_says_why():
    layer = make("Conv2D", padding="same")
    layer(inputs_of("Conv2D"), training=True)
    with pytest.raises(ValueError, match="padding='same' on HomeostaticConv2D"):
        layer.effective_bias()


@pytest.mark.parametrize("scale_invariant", [False, True])
@pytest.mark.parametrize("kind", ["Dense", "Conv2D"])
def test_a_training_pass_moves_the_mean_without_changing_the_output(
    kind, scale_invariant
):
    """The bias takes up the mean's move (exactly, without padding), so a
    layer whose weights stay put computes what it did before."""
    layer = make(kind, scale_invariant=scale_invariant)
    probe = inputs_of(kind, seed=2)
    before = np.asarray(layer(probe))
    for seed, offset in ((0, 3.0), (1, -2.0), (3, 5.0)):
        layer(inputs_of(kind, seed, offset), training=True)
        np.testing.assert_allclose(layer(probe), before, rtol=1e-4, atol=1e-4)
    assert np.abs(layer.input_mean.mean()).max() > 0.5


def test_grouped_convolutions_hold_their_output_too():
    x = inputs_of("Conv2D", offset=1.0)
    x = np.concatenate([x, -2 * x], axis=-1)
    layer = homeostatic_layers.HomeostaticConv2D(4, 2, groups=2, center_inputs=True)
    before = np.asarray(layer(x))
    layer(x + 1.0, training=True)
    np.testing.assert_allclose(layer(x), before, rtol=1e-4, atol=1e-4)


def test_a_bad_value_is_refused_by_name():
    with pytest.raises(ValueError, match=r"center_inputs='yes'"):
        homeostatic_layers.HomeostaticDense(4, center_inputs="yes")


def test_fit_centers_each_units_drive_and_saving_keeps_the_trace(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            homeostatic_layers.HomeostaticDense(
                32, activation="relu", warmup=0, center_inputs=True
            ),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy"
    )
    model.fit(x, digits.target, batch_size=32, epochs=3, verbose=0)
    layer = model.layers[0]
    mean = np.asarray(layer.input_mean.mean())
    np.testing.assert_allclose(mean, x.mean(axis=0), atol=0.05)
    # Each unit's drive has a mean near zero, whatever its weights: its
    # offset is its bias.
    drive = (x - mean) @ layer.kernel.numpy()
    assert np.all(np.abs(drive.mean(axis=0)) < 0.1 * drive.std(axis=0))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.layers[0].center_inputs is True
    np.testing.assert_array_equal(
        loaded.layers[0].input_mean.trace.numpy(), layer.input_mean.trace.numpy()
    )
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6
    )


def test_xla_and_steps_per_execution_center_as_the_plain_train_step_does():
    rng = np.random.default_rng(0)
    x = rng.random((64, 6, 6, 2)).astype("float32")
    y = rng.integers(0, 3, 64)
    predictions = []
    for jit_compile in (False, True):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((6, 6, 2)),
                make("Conv2D", activation="relu"),
                keras.layers.Flatten(),
                make("Dense", activation="relu"),
                keras.layers.Dense(3),
            ]
        )
        model.compile(
            "adam",
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit_compile,
            steps_per_execution=4,
        )
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        assert float(model.layers[2].input_mean.steps.numpy()) == 16
        predictions.append(model.predict(x, verbose=0))
    np.testing.assert_allclose(predictions[1], predictions[0], atol=1e-5)
