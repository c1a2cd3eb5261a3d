"""Homeostatic layers with `scale_invariant=True`: the rule owns each unit's
kernel norm, the optimizer only its direction."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_homeostasis import layers as homeostatic_layers

# kind: (constructor args, input shape with batch, plain Keras class)
CASES = {
    "Dense": ((4,), (6, 5), keras.layers.Dense),
    "Conv1D": ((4, 2), (6, 6, 2), keras.layers.Conv1D),
    "Conv2D": ((4, 2), (6, 5, 5, 2), keras.layers.Conv2D),
    "Conv3D": ((4, 2), (6, 4, 4, 4, 1), keras.layers.Conv3D),
}


def make(kind, **kwargs):
    args, _, _ = CASES[kind]
    cls = getattr(homeostatic_layers, "Homeostatic" + kind)
    return cls(*args, activation="relu", scale_invariant=True, **kwargs)


def inputs_of(kind, seed=0):
    _, shape, _ = CASES[kind]
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def norms(kernel):
    kernel = np.asarray(kernel)
    return np.sqrt(np.sum(np.square(kernel), axis=tuple(range(kernel.ndim - 1))))


def model_of(kind, **kwargs):
    x = inputs_of(kind)
    return keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            make(kind, **kwargs),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ]
    )


@pytest.mark.parametrize("kind", list(CASES))
def test_a_new_layer_computes_what_the_plain_layer_computes(kind):
    x = inputs_of(kind)
    args, _, plain_cls = CASES[kind]
    layer, plain = make(kind), plain_cls(*args, activation="relu")
    layer.build(x.shape)
    plain.build(x.shape)
    plain.set_weights([w.numpy() for w in layer.trainable_weights])
    np.testing.assert_allclose(layer(x), plain(x), rtol=1e-5, atol=1e-6)
    gains = np.exp(layer.homeostasis.log_gain.numpy())
    np.testing.assert_allclose(gains, norms(layer.kernel.numpy()), rtol=1e-6)


@pytest.mark.parametrize("kind", ["Dense", "Conv2D"])
def test_the_output_ignores_the_kernels_scale(kind):
    x = inputs_of(kind)
    layer = make(kind)
    before = keras.ops.convert_to_numpy(layer(x))
    layer.kernel.assign(layer.kernel.numpy() * np.linspace(0.5, 3.0, 4))
    np.testing.assert_allclose(layer(x), before, rtol=1e-5, atol=1e-6)


def test_the_gradient_has_no_component_along_each_units_weights():
    x = inputs_of("Dense")
    layer = make("Dense")
    layer.build(x.shape)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.sin(layer(x, training=True)))
    gradient = tape.gradient(loss, layer.kernel.value).numpy()
    kernel = layer.kernel.numpy()
    radial = np.sum(gradient * kernel, axis=0) / norms(kernel)
    assert np.max(np.abs(gradient)) > 1e-3
    np.testing.assert_allclose(radial, 0.0, atol=1e-5)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_the_rules_factors_go_to_the_gains_not_to_the_kernel(jit_compile):
    x = inputs_of("Dense")
    model = model_of("Dense", warmup=0, target_std=0.3, anchor=1.0, rate=0.5)
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    layer = model.layers[0]
    kernel, log_gain = layer.kernel.numpy(), layer.homeostasis.log_gain.numpy()
    model.fit(x, np.ones((len(x), 1)), batch_size=len(x), epochs=3, verbose=0)
    state = layer.homeostasis
    assert int(state.steps.numpy()) == 3
    # With a zero step the optimizer leaves the kernel; the rule did not touch it.
    np.testing.assert_array_equal(layer.kernel.numpy(), kernel)
    gains = np.exp(state.log_gain.numpy())
    assert np.all(np.abs(state.log_gain.numpy() - log_gain) > 0.05)
    # Each unit computes with its direction times its new gain.
    folded = kernel * gains / norms(kernel)
    np.testing.assert_allclose(layer.effective_kernel(), folded, rtol=1e-6)
    plain = keras.layers.Dense(4, activation="relu")
    plain.build(x.shape)
    plain.set_weights([folded, layer.bias.numpy()])
    np.testing.assert_allclose(layer(x), plain(x), rtol=1e-5, atol=1e-6)


def test_it_trains_and_saves_with_its_gains(tmp_path):
    x = inputs_of("Conv2D")
    y = np.random.default_rng(1).normal(size=(len(x), 1)).astype("float32")
    model = model_of("Conv2D", warmup=0)
    model.compile(keras.optimizers.Adam(0.01), "mse")
    model.fit(x, y, batch_size=2, epochs=3, verbose=0)
    layer = model.layers[0]
    assert all(np.all(np.isfinite(v.numpy())) for v in model.variables)
    assert layer.get_config()["scale_invariant"] is True
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.layers[0].scale_invariant is True
    np.testing.assert_array_equal(
        loaded.layers[0].homeostasis.log_gain.numpy(),
        layer.homeostasis.log_gain.numpy(),
    )
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )


def test_bad_values_are_refused_by_name():
    with pytest.raises(ValueError, match=r"scale_invariant='yes'"):
        homeostatic_layers.HomeostaticDense(4, scale_invariant="yes")
    with pytest.raises(ValueError, match=r"min_gain=0\.5"):
        homeostatic_layers.HomeostaticDense(4, scale_invariant=True, min_gain=0.5)


def test_lora_is_refused_by_name():
    layer = make("Dense", lora_rank=2)
    with pytest.raises(ValueError, match="lora_rank=2"):
        layer.build((6, 5))


def test_mixed_precision_computes_in_float16_with_float32_gains():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        x = inputs_of("Dense")
        model = model_of("Dense", warmup=0)
        model.layers[-1].dtype_policy = keras.DTypePolicy("float32")
        model.compile(keras.optimizers.SGD(0.01), "mse")
        layer = model.layers[0]
        assert layer(x).dtype == "float16"
        model.fit(x, np.ones((len(x), 1)), batch_size=2, epochs=2, verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    assert layer.homeostasis.log_gain.dtype == "float32"
    assert int(layer.homeostasis.steps.numpy()) > 0
    assert all(np.all(np.isfinite(v.numpy())) for v in model.variables)


def test_norm_relaxation_pulls_each_units_norm_toward_its_gain_only():
    x = inputs_of("Dense")
    model = model_of("Dense", warmup=0, norm_relaxation=0.5)
    model.compile(keras.optimizers.SGD(0.0), "mse")
    layer = model.layers[0]
    layer.kernel.assign(layer.kernel.numpy() * np.array([0.25, 1.0, 4.0, 16.0]))
    kernel = layer.kernel.numpy()
    model.fit(x, np.ones((len(x), 1)), batch_size=len(x), epochs=1, verbose=0)
    # log |v| moved half way toward the (new) log gain; no direction turned.
    new, log_gain = layer.kernel.numpy(), layer.homeostasis.log_gain.numpy()
    expected = np.exp(0.5 * (np.log(norms(kernel)) + log_gain))
    np.testing.assert_allclose(norms(new), expected, rtol=1e-5)
    np.testing.assert_allclose(new / norms(new), kernel / norms(kernel), rtol=1e-5)
    assert np.max(np.abs(np.log(norms(new) / norms(kernel)))) > 0.3


def test_norm_relaxation_is_checked_by_name():
    with pytest.raises(ValueError, match=r"norm_relaxation=1\.5"):
        homeostatic_layers.HomeostaticDense(
            4, scale_invariant=True, norm_relaxation=1.5
        )
    with pytest.raises(ValueError, match="scale_invariant=True"):
        homeostatic_layers.HomeostaticDense(4, norm_relaxation=0.1)
    layer = homeostatic_layers.HomeostaticDense(
        4, scale_invariant=True, norm_relaxation=1e-4
    )
    assert layer.get_config()["norm_relaxation"] == 1e-4


class SubclassedNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = make("Dense", warmup=0)
        self.head = keras.layers.Dense(1)

    def call(self, x, training=None):
        return self.head(self.hidden(x, training=training))


def test_a_subclassed_model_builds_its_layers_scaled():
    # Keras builds a subclassed model's layers while tracing a symbolic call
    # and swallows a failed build: the layer must still own its scale.
    x = inputs_of("Dense")
    model = SubclassedNet()
    model(x)
    layer = model.hidden
    assert type(layer.kernel.constraint).__name__ == "KernelScaling"
    np.testing.assert_allclose(
        np.exp(layer.homeostasis.log_gain.numpy()),
        norms(layer.kernel.numpy()),
        rtol=1e-6,
    )
    model.compile(keras.optimizers.Adam(0.01), "mse")
    model.fit(x, np.ones((len(x), 1)), batch_size=1, epochs=2, verbose=0)
    assert int(layer.homeostasis.steps.numpy()) == 2 * len(x)


@pytest.mark.parametrize("centered", [False, True])
def test_a_model_built_in_its_first_step_trains_as_one_built_before(centered):
    # A Sequential without an `Input` is built inside the first traced train
    # step, where a kernel has no value yet; the gains start from the
    # kernels' values all the same.
    x = inputs_of("Dense")
    y = np.arange(len(x)) % 2
    weights = []
    for build_first in (False, True):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [make("Dense", center_inputs=centered), keras.layers.Dense(2)]
        )
        if build_first:
            model.build((None, x.shape[1]))
        model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=3, epochs=2, verbose=0)
        layer = model.layers[0]
        gain = np.exp(layer.homeostasis.log_gain.numpy())
        assert np.all(np.isfinite(gain)) and np.all(gain > 0.1)
        weights.append([np.array(w) for w in model.weights])
    for unbuilt, built in zip(*weights):
        np.testing.assert_array_equal(unbuilt, built)
