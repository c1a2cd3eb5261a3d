"""Layer contracts of the homeostatic Dense and Conv layers (Keras run_layer_test)."""

import inspect
import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_homeostasis import layers as homeostatic_layers
from keras_homeostasis.settings import DEFAULTS
from keras_homeostasis.unit_state import UnitState

# kind: (constructor args, input shape with batch, plain Keras class)
CASES = {
    "Dense": ((4,), (3, 5), keras.layers.Dense),
    "Conv1D": ((4, 2), (3, 6, 2), keras.layers.Conv1D),
    "Conv2D": ((4, 2), (3, 5, 5, 2), keras.layers.Conv2D),
    "Conv3D": ((4, 2), (3, 4, 4, 4, 1), keras.layers.Conv3D),
}
KINDS = list(CASES)
SETTINGS = dict(
    target_std=0.7,
    target_rate=0.4,
    rate=0.2,
    bias_rate=0.05,
    momentum=0.5,
    max_step=0.1,
    min_gain=0.25,
    max_gain=4.0,
    period=2,
    warmup=0,
)


def make(kind, **kwargs):
    args, _, _ = CASES[kind]
    cls = getattr(homeostatic_layers, "Homeostatic" + kind)
    return cls(*args, activation="relu", **kwargs)


def inputs_of(kind, seed=0):
    _, shape, _ = CASES[kind]
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def to_json(config):
    return json.dumps(config, sort_keys=True, default=str)


@pytest.fixture
def mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("kind", KINDS)
def test_build_creates_kernel_bias_and_float32_state(kind):
    layer = make(kind)
    layer.build(inputs_of(kind).shape)
    assert layer.built
    assert [w.name for w in layer.trainable_weights] == ["kernel", "bias"]
    assert isinstance(layer.homeostasis, UnitState)
    assert layer.homeostasis.units == 4
    state_ids = {id(v) for v in layer.homeostasis.variables}
    assert state_ids == {id(v) for v in layer.non_trainable_weights}
    assert all(v.dtype in ("float32", "int64") for v in layer.non_trainable_weights)
    # The scaling hangs on the variables; the config keeps the user's constraint.
    assert layer.kernel.constraint is not None
    assert layer.get_config()["kernel_constraint"] is None


@pytest.mark.parametrize("kind", KINDS)
def test_symbolic_call_matches_the_plain_layer(kind):
    x = inputs_of(kind)
    args, _, plain = CASES[kind]
    symbolic = keras.KerasTensor((None, *x.shape[1:]))
    out = make(kind)(symbolic)
    expected = plain(*args)(symbolic)
    assert out.shape == expected.shape and out.dtype == expected.dtype


@pytest.mark.parametrize("kind", KINDS)
def test_eager_call_equals_the_plain_layer_and_counts_only_training(kind):
    x = inputs_of(kind)
    args, _, plain_cls = CASES[kind]
    layer = make(kind)
    plain = plain_cls(*args, activation="relu")
    plain.build(x.shape)
    layer.build(x.shape)
    plain.set_weights([w.numpy() for w in layer.trainable_weights])
    for training in (None, False):
        out = layer(x, training=training)
        np.testing.assert_array_equal(out, plain(x))
        assert np.all(layer.homeostasis.accumulator.numpy() == 0.0)
    layer(x, training=True)
    packed = layer.homeostasis.accumulator.numpy()
    y = keras.ops.convert_to_numpy(plain(x))
    spatial = tuple(range(y.ndim - 1))
    np.testing.assert_allclose(packed[:4], np.abs(y).sum(axis=spatial), rtol=1e-5)
    assert packed[-1] == y.size // 4


@pytest.mark.parametrize("kind", KINDS)
def test_one_fit_step_updates_the_state_once(kind):
    x = inputs_of(kind)
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            make(kind, warmup=0, target_std=0.5),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.SGD(0.01), "mse")
    layer = model.layers[0]
    kernel = layer.kernel.numpy()
    model.fit(x, np.ones((len(x), 1)), batch_size=len(x), epochs=1, verbose=0)
    state = layer.homeostasis
    assert int(state.steps.numpy()) == 1
    assert np.all(state.accumulator.numpy() == 0.0)
    assert np.any(state.factor.numpy() != 1.0)
    assert not np.array_equal(layer.kernel.numpy(), kernel)
    assert all(np.all(np.isfinite(v.numpy())) for v in state.variables)


@pytest.mark.parametrize("kind", KINDS)
def test_mixed_precision_keeps_float32_statistics(kind, mixed_precision):
    x = inputs_of(kind)
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            make(kind, warmup=0),
            keras.layers.Flatten(),
            keras.layers.Dense(1, dtype="float32"),
        ]
    )
    model.compile(keras.optimizers.SGD(0.01), "mse")
    layer = model.layers[0]
    assert layer.compute_dtype == "float16" and layer.kernel.dtype == "float32"
    assert layer(x).dtype == "float16"
    model.fit(x, np.ones((len(x), 1)), batch_size=1, epochs=1, verbose=0)
    state = layer.homeostasis
    assert all(v.dtype in ("float32", "int64") for v in state.variables)
    assert all(np.all(np.isfinite(v.numpy())) for v in state.variables)
    iterations = int(model.optimizer.iterations.numpy())
    # The loss-scale optimizer may skip an overflowing step: no update then.
    assert 0 < int(state.steps.numpy()) <= iterations <= len(x)


@pytest.mark.parametrize("kind", KINDS)
def test_trainable_false_counts_nothing(kind):
    layer = make(kind, trainable=False)
    layer(inputs_of(kind), training=True)
    assert np.all(layer.homeostasis.accumulator.numpy() == 0.0)


def test_channels_first_conv_counts_the_channel_axis():
    x = inputs_of("Conv2D")
    layer = homeostatic_layers.HomeostaticConv2D(
        4, 2, activation="relu", data_format="channels_first"
    )
    x = np.moveaxis(x, -1, 1)
    # TensorFlow 2.21 runs an NCHW Conv2D on CPU only under XLA (eager and
    # plain graphs raise UnimplementedError, for keras.layers.Conv2D too).
    y = keras.ops.convert_to_numpy(tf.function(layer, jit_compile=True)(x))
    tf.function(lambda t: layer(t, training=True), jit_compile=True)(x)
    packed = layer.homeostasis.accumulator.numpy()
    np.testing.assert_allclose(packed[:4], np.abs(y).sum(axis=(0, 2, 3)), rtol=1e-5)
    assert packed[-1] == y.shape[0] * y.shape[2] * y.shape[3]


def test_user_kernel_constraint_still_applies():
    x, _ = inputs_of("Dense"), None
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            make("Dense", warmup=0, kernel_constraint=keras.constraints.NonNeg()),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.SGD(1.0), "mse")
    model.fit(x, np.full((len(x), 1), -5.0), epochs=2, verbose=0)
    kernel = model.layers[0].kernel.numpy()
    assert np.all(kernel >= 0.0)
    assert int(model.layers[0].homeostasis.steps.numpy()) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_config_round_trip_gives_the_same_json(kind):
    layer = make(kind, name=f"h_{kind}", **SETTINGS)
    config = layer.get_config()
    revived = type(layer).from_config(config)
    assert to_json(revived.get_config()) == to_json(config)
    for name, value in SETTINGS.items():
        assert config[name] == value and getattr(revived, name) == value
    serialized = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(clone) is type(layer)
    assert to_json(clone.get_config()) == to_json(config)


@pytest.mark.parametrize("kind", KINDS)
def test_every_init_argument_and_setting_is_in_the_config(kind):
    args, _, plain_cls = CASES[kind]
    config = make(kind).get_config()
    # The homeostatic __init__ takes the plain layer's arguments plus the
    # settings; Keras itself leaves a few out of the plain config.
    plain_config = plain_cls(*args).get_config()
    params = set(inspect.signature(plain_cls.__init__).parameters) - {"self", "kwargs"}
    keras_omits = params - set(plain_config)
    assert keras_omits <= {"lora_rank", "lora_alpha", "rank", "activity_regularizer"}
    expected = (params - keras_omits) | set(plain_config) | set(DEFAULTS)
    missing = sorted(expected - set(config))
    assert not missing, f"get_config() lacks {missing}"


class DropsTraining(keras.Model):
    """A subclassed model whose `call` takes no `training` argument."""

    def __init__(self):
        super().__init__(name="drops_training")
        self.hidden = make("Dense", name="hidden", warmup=0)
        self.head = keras.layers.Dense(1)

    def call(self, x):
        return self.head(self.hidden(x))


class ForwardsTraining(DropsTraining):
    def call(self, x, training=None):
        return self.head(self.hidden(x, training=training))


def _fit_subclassed(model_class, **compile_args):
    model = model_class()
    model.compile(keras.optimizers.SGD(0.01), "mse", **compile_args)
    x = inputs_of("Dense")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, np.ones((len(x), 1)), batch_size=1, epochs=2, verbose=0)
    named = [w for w in caught if "training=None in a train step" in str(w.message)]
    return model.hidden, named


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_a_layer_that_fit_calls_without_training_is_named_once(run_eagerly):
    layer, named = _fit_subclassed(DropsTraining, run_eagerly=run_eagerly)
    assert int(layer.homeostasis.steps.numpy()) == 0
    assert len(named) == 1
    assert "HomeostaticDense 'hidden'" in str(named[0].message)
    assert "training=training" in str(named[0].message)


def test_a_layer_that_fit_calls_with_training_gives_no_warning():
    layer, named = _fit_subclassed(ForwardsTraining)
    assert int(layer.homeostasis.steps.numpy()) == 6
    assert named == []


def test_calls_outside_fit_without_training_give_no_warning():
    x = inputs_of("Dense")
    model = keras.Sequential([keras.Input(x.shape[1:]), make("Dense", warmup=0)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    model(x)
    model.predict(x, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, np.ones((len(x), 4)), epochs=1, verbose=0)
        model.predict(x, verbose=0)
        model.fit(x, np.ones((len(x), 4)), epochs=1, verbose=0)
    assert not [w for w in caught if "training=None" in str(w.message)]
    assert int(model.layers[0].homeostasis.steps.numpy()) == 2
