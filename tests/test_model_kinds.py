"""SynapticScalingCallback on every kind of Keras model and layer.

Subclassed models, output layers behind parameter-free layers, interrupted
fits, custom loops, and the layer kinds the callback refuses.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from homeostasis_testing import FAST
from homeostasis_testing import LOSS
from homeostasis_testing import RULE_ALONE
from homeostasis_testing import assert_bit_equal
from homeostasis_testing import noise
from homeostasis_testing import snapshot

from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis import layer_selection


class Subclassed(keras.Model):
    """Defines its output layer first; `call` does not forward `training`."""

    def __init__(self, kind="Dense"):
        super().__init__()
        self.out = keras.layers.Dense(3, name="out")
        if kind == "Dense":
            self.h0 = keras.layers.Dense(8, activation="relu", name="h0")
        else:
            self.h0 = keras.layers.Conv1D(4, 2, activation="relu", name="h0")
        self.flat = keras.layers.Flatten()
        self.h1 = keras.layers.Dense(6, activation="relu", name="h1")

    def call(self, x):
        return self.out(self.h1(self.flat(self.h0(x))))


def subclassed(kind="Dense", seed=0, lr=0.0):
    keras.utils.set_random_seed(seed)
    model = Subclassed(kind)
    shape = (8,) if kind == "Dense" else (8, 2)
    model(np.zeros((1, *shape), "float32"))
    model.compile(keras.optimizers.SGD(lr), LOSS)
    return model, noise(shape, n=64)


def fit(model, x, y, callbacks=(), epochs=1, **kwargs):
    return model.fit(
        x, y, epochs=epochs, batch_size=16, shuffle=False, verbose=0,
        callbacks=list(callbacks), **kwargs,
    )  # fmt: skip


def is_hooked(model):
    layers = [model, *model.layers]
    wrapped = any(
        name in vars(x)
        for x in layers
        for name in ("call", "train_step", "make_train_function")
    )
    constrained = any(v.constraint is not None for x in model.layers for v in x.weights)
    return wrapped or constrained


class Inference(keras.callbacks.Callback):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            self.model(self.x[:8])
            self.model.predict(self.x[:8], verbose=0)
            self.model.evaluate(self.x[:8], self.y[:8], verbose=0)


@pytest.mark.parametrize("kind", ["Dense", "Conv1D"])
def test_subclassed_model_without_training_argument_is_scaled(kind):
    model, (x, y) = subclassed(kind)
    before = {w.path: w.numpy() for w in model.weights}
    callback = SynapticScalingCallback(**FAST)
    fit(model, x, y, [callback], validation_data=(x[:16], y[:16]))
    assert [layer.name for layer, _ in callback.bindings] == ["h0", "h1"]
    for layer, state in callback.bindings:
        assert int(state.steps.numpy()) == 4
        gain = np.exp(state.log_gain.numpy())
        assert np.any(np.abs(np.log(gain)) > 0.05), "no unit was scaled"
        expected = before[layer.kernel.path] * gain
        np.testing.assert_allclose(layer.kernel.numpy(), expected, rtol=1e-5)
    np.testing.assert_array_equal(
        model.out.kernel.numpy(), before[model.out.kernel.path]
    )
    assert not is_hooked(model)


class CountsTraces(Subclassed):
    """`Subclassed`, counting how often a train step traces its `call`."""

    traces = 0

    def call(self, x):
        graph = tf.compat.v1.get_default_graph()
        if not tf.executing_eagerly() and "step" in graph.name:
            CountsTraces.traces += 1
        return super().call(x)


def unbuilt(kind, build):
    """A model of `kind` Keras has not built (or, with `build`, one that is)."""
    keras.utils.set_random_seed(0)
    shape = (8,) if kind != "Conv1D" else (8, 2)
    if kind == "Sequential":
        model = keras.Sequential(
            [
                keras.layers.Dense(8, activation="relu", name="h0"),
                keras.layers.Dense(6, activation="relu", name="h1"),
                keras.layers.Dense(3, name="out"),
            ]
        )
    else:
        model = CountsTraces(kind)
    if build:
        model(np.zeros((1, *shape), "float32"))
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), LOSS)
    return model, noise(shape, n=64)


# The callback's modes that keep state of their own per layer.
HELD_CENTERED = {"center_inputs": True, "hold_norms": True}


@pytest.mark.parametrize("options", [RULE_ALONE, {}], ids=["rule_alone", "defaults"])
@pytest.mark.parametrize("kind", ["Dense", "Conv1D", "Sequential"])
def test_an_unbuilt_model_is_bound_in_its_first_step(kind, options, tmp_path):
    """Keras builds a subclassed model, or a Sequential without an `Input`,
    in the first trace of `fit`: the callback binds it there, and the run is
    the run of the same model built beforehand, bit for bit."""
    runs = []
    for build in (False, True):
        model, (x, y) = unbuilt(kind, build)
        callback = SynapticScalingCallback(
            log_dir=str(tmp_path / str(build)), **options
        )
        fit(model, x, y, [callback], epochs=2)
        traced = CountsTraces.traces
        fit(model, x, y, [callback])
        assert CountsTraces.traces == traced, "a second fit retraced"
        assert [layer.name for layer, _ in callback.bindings] == ["h0", "h1"]
        assert int(callback.bindings[0][1].steps.numpy()) == 12
        assert not is_hooked(model)
        runs.append(snapshot(model))
    assert_bit_equal(*runs)
    # The logger, which needs the bound layers, logged them from the first step.
    events = list((tmp_path / "False").rglob("events.out.tfevents*"))
    tags = {
        value.tag
        for path in events
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    }
    layers = {"h0", "h1"}
    extra = {f"{x}/{h}" for x in layers for h in ("input_mean", "step_scale")}
    assert tags == (layers if options == RULE_ALONE else layers | extra)


def custom_step(model):
    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = LOSS(yb, model(xb, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply(grads, model.trainable_variables)

    return step


@pytest.mark.parametrize("options", [FAST, HELD_CENTERED])
@pytest.mark.parametrize("loop", ["train_on_batch", "custom"])
def test_attached_binds_an_unbuilt_model_at_its_first_call(loop, options):
    runs = []
    for build in (False, True):
        model, (x, y) = unbuilt("Dense", build)
        callback = SynapticScalingCallback(**options)
        with callback.attached(model):
            step = custom_step(model) if loop == "custom" else model.train_on_batch
            for i in range(0, 48, 16):
                step(x[i : i + 16], y[i : i + 16])
        assert not is_hooked(model)
        assert [layer.name for layer, _ in callback.bindings] == ["h0", "h1"]
        assert int(callback.bindings[0][1].steps.numpy()) == 3
        runs.append(snapshot(model))
    assert_bit_equal(*runs)


@pytest.mark.parametrize("kind", ["Dense", "Conv1D"])
def test_inference_during_fit_of_a_subclassed_model_is_not_counted(kind):
    results = []
    for extra in ([], "inference"):
        model, (x, y) = subclassed(kind, lr=0.01)
        callbacks = [SynapticScalingCallback(**FAST)]
        if extra:
            callbacks.append(Inference(x, y))
        fit(model, x, y, callbacks, epochs=2)
        results.append(snapshot(model))
    assert_bit_equal(results[0], results[1])


def test_a_bound_layer_never_called_in_training_is_named_in_a_warning():
    class Skips(keras.Model):
        def __init__(self):
            super().__init__()
            self.used = keras.layers.Dense(4, activation="relu", name="used")
            self.unused = keras.layers.Dense(4, name="unused")
            self.out = keras.layers.Dense(3, name="out")

        def call(self, x):
            return self.out(self.used(x))

    model = Skips()
    model(np.zeros((1, 8), "float32"))
    model.unused.build((None, 8))
    model.compile("sgd", LOSS)
    x, y = noise((8,), n=32)
    callback = SynapticScalingCallback(layers=["used", "unused"], **FAST)
    with pytest.warns(UserWarning, match=r"\['unused'\]"):
        fit(model, x, y, [callback])


def functional(head):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    h = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    logits = keras.layers.Dense(3, name="logits")(h)
    return keras.Model(inputs, head(logits))


@pytest.mark.parametrize(
    "head",
    [
        keras.layers.Softmax(),
        keras.layers.Activation("softmax", dtype="float32"),
        lambda t: keras.layers.Reshape((3,))(keras.layers.Dropout(0.1)(t)),
        lambda t: keras.layers.Activation("relu")(keras.layers.Softmax()(t)),
    ],
    ids=["softmax", "activation_float32", "dropout_reshape", "two_heads"],
)
def test_a_dense_behind_parameter_free_layers_is_the_output_layer(head):
    model = functional(head)
    model.compile("sgd", "sparse_categorical_crossentropy")
    callback = SynapticScalingCallback(**FAST)
    callback.set_model(model)
    assert [layer.name for layer, _ in callback.bindings] == ["hidden"]


def nested_model():
    """A functional model whose head is a nested `Sequential`."""
    keras.utils.set_random_seed(0)
    head = keras.Sequential(
        [keras.layers.Dense(6, activation="relu", name="inner_hidden"),
         keras.layers.Dense(3, name="inner_out"), keras.layers.Softmax()]
    )  # fmt: skip
    inputs = keras.Input((8,))
    h = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, head(h))


def test_nested_sequential_whose_last_layer_is_the_output():
    callback = SynapticScalingCallback(**FAST)
    callback.set_model(nested_model())
    assert [layer.name for layer, _ in callback.bindings] == ["hidden", "inner_hidden"]


def test_a_nested_layer_trains_held_and_centered():
    model = nested_model()
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), LOSS)
    callback = SynapticScalingCallback(**HELD_CENTERED)
    x, y = noise((8,), n=64)
    fit(model, x, y, [callback], epochs=2)
    assert [layer.name for layer, _ in callback.bindings] == ["hidden", "inner_hidden"]
    for layer, state in callback.bindings:
        assert int(state.steps.numpy()) == 8 and state.centering is not None
        norms = np.linalg.norm(layer.kernel.numpy(), axis=0)
        np.testing.assert_allclose(norms, np.exp(state.log_gain.numpy()), rtol=1e-5)


def test_exclude_by_name_and_class_and_its_config():
    model, _ = subclassed("Dense")
    callback = SynapticScalingCallback(exclude=["h1"], **FAST)
    callback.set_model(model)
    assert [layer.name for layer, _ in callback.bindings] == ["h0"]
    callback = SynapticScalingCallback(exclude=[keras.layers.Conv1D], **FAST)
    callback.set_model(model)
    assert [layer.name for layer, _ in callback.bindings] == ["h0", "h1"]
    assert callback.get_config()["exclude"] == [{"layer_class": "Conv1D"}]
    with pytest.raises(TypeError, match="exclude=3"):
        SynapticScalingCallback(exclude=3)
    with pytest.raises(ValueError, match="'nope': no such layer"):
        SynapticScalingCallback(exclude=["nope"]).set_model(model)


def test_layer_classes_survive_keras_serialization():
    callback = SynapticScalingCallback(layers=[keras.layers.Dense, "a"], **FAST)
    config = keras.saving.serialize_keras_object(callback)
    clone = keras.saving.deserialize_keras_object(config)
    assert clone.layers == [keras.layers.Dense, "a"]


def test_untraceable_subclassed_model_asks_for_layers_or_exclude():
    model, _ = subclassed("Dense")
    original = model.get_build_config
    object.__setattr__(model, "get_build_config", lambda: {})
    with pytest.raises(ValueError, match="`layers=`.*`exclude=`"):
        SynapticScalingCallback(**FAST).set_model(model)
    callback = SynapticScalingCallback(exclude=["out"], **FAST)
    callback.set_model(model)
    assert [layer.name for layer, _ in callback.bindings] == ["h0", "h1"]
    object.__setattr__(model, "get_build_config", original)


class Interrupt(keras.callbacks.Callback):
    def __init__(self, error):
        super().__init__()
        self.error = error

    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            raise self.error


def plain_copy(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.compile(keras.optimizers.SGD(0.05), LOSS)
    return copy


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
@pytest.mark.parametrize("then", ["fit", "train_on_batch"])
def test_after_an_interrupted_fit_the_model_trains_as_never_hooked(error, then):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    h = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(h))
    model.compile(keras.optimizers.SGD(0.05), LOSS)
    x, y = noise((8,), n=64)
    callbacks = [SynapticScalingCallback(**FAST), Interrupt(error)]
    with pytest.raises(type(error)):
        fit(model, x, y, callbacks, epochs=2)
    reference = plain_copy(model)
    with pytest.warns(UserWarning, match="did not finish"):
        if then == "fit":
            fit(model, x, y)
        else:
            model.train_on_batch(x[:16], y[:16])
    assert not is_hooked(model)
    if then == "fit":
        fit(reference, x, y)
    else:
        reference.train_on_batch(x[:16], y[:16])
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        model.predict(x, verbose=0), reference.predict(x, verbose=0)
    )


def test_attached_drives_train_on_batch_and_a_custom_loop():
    model, (x, y) = subclassed("Dense")
    callback = SynapticScalingCallback(**FAST)
    with callback.attached(model):
        for i in range(0, 32, 16):
            model.train_on_batch(x[i : i + 16], y[i : i + 16])
        model.evaluate(x, y, verbose=0)
        model.predict(x, verbose=0)
        custom_step(model)(x[32:48], y[32:48])
        model(x[:8])  # no flag: inference, not counted
    assert not is_hooked(model)
    for _, state in callback.bindings:
        assert int(state.steps.numpy()) == 3
        assert np.any(np.abs(state.log_gain.numpy()) > 0.05)


def test_attached_removes_its_hooks_on_an_exception():
    model, (x, y) = subclassed("Dense")
    callback = SynapticScalingCallback(**FAST)
    with pytest.raises(RuntimeError, match="inside"):
        with callback.attached(model):
            raise RuntimeError("inside")
    assert not is_hooked(model)


def lora_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    h = keras.layers.Dense(8, activation="relu", name="lora")(inputs)
    h = keras.layers.Dense(8, activation="relu", name="plain")(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(h))
    model.get_layer("lora").enable_lora(4)
    model.compile("sgd", LOSS)
    return model


def test_lora_layer_is_skipped_by_default_and_refused_by_name():
    model = lora_model()
    x, y = noise((8,), n=32)
    callback = SynapticScalingCallback(**FAST)
    fit(model, x, y, [callback])
    assert [layer.name for layer, _ in callback.bindings] == ["plain"]
    with pytest.raises(ValueError, match="'lora': LoRA is enabled"):
        fit(model, x, y, [SynapticScalingCallback(layers=["lora"])])
    assert not is_hooked(model)


@pytest.mark.parametrize(
    "layer, reason",
    [
        (keras.layers.LSTM(4, name="named", return_sequences=True), "recurrent"),
        (keras.layers.GRU(4, name="named", return_sequences=True), "recurrent"),
        (keras.layers.DepthwiseConv1D(2, name="named"), "depthwise"),
        (keras.layers.SeparableConv1D(4, 2, name="named"), "separable"),
        (
            keras.layers.TimeDistributed(keras.layers.Dense(4), name="named"),
            "wrapper is not scaled itself",
        ),
        (
            keras.layers.Bidirectional(
                keras.layers.LSTM(2, return_sequences=True), name="named"
            ),
            "wraps recurrent layers",
        ),  # fmt: skip
        (
            keras.layers.EinsumDense("abc,cde->abde", (6, 2, 2), name="named"),
            "no single unit axis",
        ),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, keras.layers.Layer) else None,
)
def test_unsupported_layers_named_in_layers_are_refused_with_the_reason(layer, reason):
    inputs = keras.Input((6, 3))
    h = layer(inputs)
    h = keras.layers.Dense(5, activation="relu", name="dense")(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(h)))
    with pytest.raises(ValueError, match=f"'named'.*{reason}"):
        SynapticScalingCallback(layers=["named"]).set_model(model)
    callback = SynapticScalingCallback()
    callback.set_model(model)
    # A TimeDistributed is not scaled itself, the Dense it wraps is.
    inner = [x.name for x in layer_selection.all_layers_within(layer)]
    assert [x.name for x, _ in callback.bindings] == [*inner, "dense"]


def test_int8_dense_is_refused_by_name():
    inputs = keras.Input((8,))
    h = keras.layers.Dense(8, name="q")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(4)(h)))
    model.get_layer("q").quantize("int8")
    with pytest.raises(ValueError, match="'q'.*quantized"):
        SynapticScalingCallback(layers=["q"]).set_model(model)


def test_recurrent_layers_skipped_by_default_are_named_in_a_warning():
    inputs = keras.Input((6, 3))
    h = keras.layers.SimpleRNN(4, name="rnn")(inputs)
    h = keras.layers.Dense(5, name="dense")(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    with pytest.warns(UserWarning, match=r"\['dense'\].*'rnn' \(recurrent"):
        SynapticScalingCallback().set_model(model)
