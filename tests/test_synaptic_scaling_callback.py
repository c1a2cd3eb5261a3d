"""SynapticScalingCallback on real Keras models: selection, scaling, hooks."""

import copy

import keras
import numpy as np
import pytest
from homeostasis_testing import FAST
from homeostasis_testing import INPUT_SHAPES
from homeostasis_testing import assert_bit_equal
from homeostasis_testing import assert_close
from homeostasis_testing import compiled
from homeostasis_testing import model_of
from homeostasis_testing import noise
from homeostasis_testing import snapshot
from homeostasis_testing import state_arrays

from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis.layers import HomeostaticDense
from keras_homeostasis.unit_state import UnitState

KINDS = list(INPUT_SHAPES)


def frozen_sgd():
    """Learning rate 0: only the homeostatic scaling changes the weights."""
    return keras.optimizers.SGD(learning_rate=0.0)


def data(kind, n=64):
    return noise(INPUT_SHAPES[kind], n=n)


def fit(model, x, y, callbacks=(), epochs=1, batch_size=16, **kwargs):
    return model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=False,
        verbose=0,
        callbacks=list(callbacks),
        **kwargs,
    )


def is_hooked(layer):
    return "call" in vars(layer) or layer.kernel.constraint is not None


@pytest.mark.parametrize("functional", [False, True], ids=["sequential", "functional"])
@pytest.mark.parametrize("kind", KINDS)
def test_fit_scales_every_hidden_layer_and_not_the_output(kind, functional):
    model = compiled(model_of(kind, functional=functional), frozen_sgd())
    before = {layer.name: layer.get_weights() for layer in model.layers}
    callback = SynapticScalingCallback(**FAST)
    fit(model, *data(kind), callbacks=[callback])
    bound = [layer.name for layer, _ in callback.bindings]
    assert bound == ["hidden0", "hidden1"]
    for layer, state in callback.bindings:
        assert layer.homeostasis is state
        assert int(state.steps.numpy()) == 4
        gain = np.exp(state.log_gain.numpy())
        assert np.any(np.abs(np.log(gain)) > 0.05), "no unit was scaled"
        kernel0 = before[layer.name][0]
        np.testing.assert_allclose(layer.kernel.numpy(), kernel0 * gain, rtol=1e-5)
    output = model.get_layer("output")
    assert not hasattr(output, "homeostasis")
    for now, then in zip(output.get_weights(), before["output"]):
        np.testing.assert_array_equal(now, then)


def test_trains_with_a_real_optimizer_one_step_per_optimizer_step():
    x, y = data("Dense", n=96)
    model = compiled(model_of("Dense"))
    callback = SynapticScalingCallback(warmup=2)
    history = fit(model, x, y, callbacks=[callback], epochs=2)
    assert np.all(np.isfinite(history.history["loss"]))
    for _, state in callback.bindings:
        assert int(state.steps.numpy()) == int(model.optimizer.iterations.numpy())
        assert all(np.all(np.isfinite(a)) for a in state_arrays(state).values())


def test_selection_by_name_and_by_class():
    x, y = data("Conv2D")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(INPUT_SHAPES["Conv2D"]),
            keras.layers.Conv2D(4, 2, activation="relu", name="hidden0"),
            keras.layers.Conv2D(4, 2, activation="relu", name="hidden1"),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="relu", name="dense_hidden"),
            keras.layers.Dense(3, name="output"),
        ]
    )
    compiled(model, frozen_sgd())

    def bound(layers):
        callback = SynapticScalingCallback(layers=layers, **FAST)
        callback.set_model(model)
        return [layer.name for layer, _ in callback.bindings]

    assert bound(None) == ["hidden0", "hidden1", "dense_hidden"]
    assert bound(["hidden1"]) == ["hidden1"]
    assert bound([keras.layers.Conv2D]) == ["hidden0", "hidden1"]
    assert bound(keras.layers.Dense) == ["dense_hidden"]  # not the output
    assert bound(["output", "hidden0"]) == ["hidden0", "output"]
    callback = SynapticScalingCallback(layers=["hidden1"], **FAST)
    fit(model, x, y, callbacks=[callback])
    assert not hasattr(model.get_layer("hidden0"), "homeostasis") or (
        int(model.get_layer("hidden0").homeostasis.steps.numpy()) == 0
    )


def test_unknown_layer_name_raises_naming_it():
    model = compiled(model_of("Dense"))
    callback = SynapticScalingCallback(layers=["hidden0", "nope"])
    with pytest.raises(ValueError, match=r"\['nope'\]"):
        fit(model, *data("Dense"), callbacks=[callback])


@pytest.mark.parametrize("case", ["output_only", "homeostatic_only", "frozen"])
def test_model_without_eligible_layers_raises_a_clear_error(case):
    if case == "output_only":
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    elif case == "homeostatic_only":
        model = keras.Sequential(
            [keras.Input((8,)), HomeostaticDense(4), keras.layers.Dense(3)]
        )
    else:
        model = model_of("Dense")
        for layer in model.layers[:-1]:
            layer.trainable = False
    compiled(model)
    with pytest.raises(ValueError, match="no layer that SynapticScalingCallback"):
        fit(model, *data("Dense"), callbacks=[SynapticScalingCallback()])


def test_callback_without_a_model_raises_a_clear_error():
    with pytest.raises(ValueError, match="has no model: pass it to `fit`"):
        SynapticScalingCallback(**FAST).on_train_begin()


def test_homeostatic_layers_are_left_to_themselves():
    model = keras.Sequential(
        [
            keras.Input((8,)),
            HomeostaticDense(5, activation="relu", name="self_scaled", warmup=0),
            keras.layers.Dense(4, activation="relu", name="plain"),
            keras.layers.Dense(3, name="output"),
        ]
    )
    compiled(model)
    callback = SynapticScalingCallback(**FAST)
    fit(model, *data("Dense"), callbacks=[callback])
    assert [layer.name for layer, _ in callback.bindings] == ["plain"]
    # Each kind of state was stepped exactly once per optimizer step.
    assert int(model.layers[0].homeostasis.steps.numpy()) == 4
    assert int(model.layers[1].homeostasis.steps.numpy()) == 4


def test_nested_model_layers_are_found():
    inner = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(5, activation="relu", name="inner")],
        name="block",
    )
    inputs = keras.Input((8,))
    outputs = keras.layers.Dense(3, name="output")(inner(inputs))
    model = compiled(keras.Model(inputs, outputs))
    callback = SynapticScalingCallback(**FAST)
    fit(model, *data("Dense"), callbacks=[callback])
    assert [layer.name for layer, _ in callback.bindings] == ["inner"]
    assert int(callback.bindings[0][1].steps.numpy()) == 4


def test_steps_per_execution_counts_every_optimizer_step():
    x, y = data("Dense", n=96)
    results = {}
    for steps_per_execution in (1, 2):
        model = compiled(model_of("Dense"), steps_per_execution=steps_per_execution)
        callback = SynapticScalingCallback(**FAST)
        fit(model, x, y, callbacks=[callback], epochs=2)
        assert int(model.optimizer.iterations.numpy()) == 12
        assert [int(s.steps.numpy()) for _, s in callback.bindings] == [12, 12]
        results[steps_per_execution] = snapshot(model)
    assert_bit_equal(results[1], results[2])


def test_xla_train_step_counts_every_step_and_matches_the_graph_one():
    x, y = data("Dense", n=96)
    results = []
    for jit_compile, steps_per_execution in ((False, 1), (True, 2)):
        model = compiled(
            model_of("Dense"),
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
        )
        callback = SynapticScalingCallback(**FAST)
        fit(model, x, y, callbacks=[callback], epochs=2)
        assert model.jit_compile is jit_compile
        assert [int(s.steps.numpy()) for _, s in callback.bindings] == [12, 12]
        results.append(snapshot(model))
    # XLA orders float32 sums its own way, differently per TensorFlow release
    # (2.18: 1.1e-5 apart on the second-moment trace, a relative 1e-6).
    assert_close(results[0], results[1], atol=1e-5, rtol=1e-5)


def test_hooks_are_removed_after_fit():
    x, y = data("Dense")
    model = compiled(model_of("Dense"), frozen_sgd())
    user_constraint = keras.constraints.NonNeg()
    model.layers[1].kernel.constraint = user_constraint
    callback = SynapticScalingCallback(**FAST)
    fit(model, x, y, callbacks=[callback])
    assert "call" not in vars(model.layers[0])
    assert model.layers[0].kernel.constraint is None
    assert model.layers[1].kernel.constraint is user_constraint
    model.layers[1].kernel.constraint = None
    # A later fit without the callback neither steps the state nor scales.
    after = snapshot(model, optimizer=False)
    fit(model, x, y, epochs=2)
    assert_bit_equal(snapshot(model, optimizer=False), after)


def test_a_second_fit_continues_the_state():
    x, y = data("Dense")
    model = compiled(model_of("Dense"))
    callback = SynapticScalingCallback(**FAST)
    fit(model, x, y, callbacks=[callback])
    first = [layer.homeostasis for layer, _ in callback.bindings]
    fit(model, x, y, callbacks=[callback])
    assert [s for _, s in callback.bindings] == first
    assert [int(s.steps.numpy()) for s in first] == [8, 8]


def test_fresh_callback_after_an_interrupted_fit_matches_an_uninterrupted_run():
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    x, y = data("Dense")
    reference = compiled(model_of("Dense"))
    fit(reference, x, y, callbacks=[SynapticScalingCallback(**FAST)])
    fit(reference, x, y, callbacks=[SynapticScalingCallback(**FAST)])

    model = compiled(model_of("Dense"))
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(
            model,
            x,
            y,
            epochs=3,
            callbacks=[SynapticScalingCallback(**FAST), Interrupt()],
        )
    # The interrupted fit never reached on_train_end: its hooks are still on.
    assert is_hooked(model.layers[0])
    fit(model, x, y, callbacks=[SynapticScalingCallback(**FAST)])
    assert not any(is_hooked(layer) for layer in model.layers[:2])
    assert_bit_equal(snapshot(model), snapshot(reference))


def test_deepcopy_before_and_after_use():
    x, y = data("Dense")
    callback = SynapticScalingCallback(layers=["hidden1"], **FAST)
    fresh = copy.deepcopy(callback)
    assert fresh.get_config() == callback.get_config() and fresh is not callback
    model = compiled(model_of("Dense"))
    fit(model, x, y, callbacks=[callback])
    used = copy.deepcopy(callback)
    assert used.get_config() == callback.get_config()
    assert used.bindings == [] and used.model is None
    other = compiled(model_of("Dense", seed=1))
    fit(other, x, y, callbacks=[used])
    assert isinstance(other.get_layer("hidden1").homeostasis, UnitState)
    assert other.get_layer("hidden1").homeostasis is not (
        model.get_layer("hidden1").homeostasis
    )
    assert int(model.get_layer("hidden1").homeostasis.steps.numpy()) == 4


def test_config_rebuilds_an_equal_callback():
    callback = SynapticScalingCallback(layers=["a", "b"], target_std=0.5, period=3)
    clone = type(callback)(**callback.get_config())
    assert clone.get_config() == callback.get_config()
    assert clone.settings["target_std"] == 0.5 and clone.layers == ["a", "b"]


@pytest.fixture
def mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize(
    "options",
    [{}, {"hold_norms": True, "center_inputs": True}],
    ids=["rule_alone", "held_centered"],
)
def test_mixed_precision_model_keeps_float32_state(mixed_precision, options):
    x, y = data("Conv2D")
    model = compiled(model_of("Conv2D"))
    assert model.layers[0].compute_dtype == "float16"
    settings = dict(FAST)
    if options:  # the held norms take no gain bounds
        settings.pop("min_gain"), settings.pop("max_gain")
    callback = SynapticScalingCallback(**{**settings, **options})
    fit(model, x, y, callbacks=[callback], epochs=2)
    iterations = int(model.optimizer.iterations.numpy())
    for _, state in callback.bindings:
        assert all(v.dtype in ("float32", "int64") for v in state.variables)
        assert all(np.all(np.isfinite(a)) for a in state_arrays(state).values())
        # A step the loss-scale optimizer skips is not a homeostatic step.
        assert 0 < int(state.steps.numpy()) <= iterations <= 8
