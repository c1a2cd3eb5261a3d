"""Under `fit`, the callback's engine sums the passes its train step
recorded; a pass no engine summed goes to the accumulator, as before."""

import homeostasis_testing as ht
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis import call_hooks
from keras_homeostasis import rule

BATCH = 8


class HeadOnly(keras.Sequential):
    """Trains only its output layer: the hidden layers are called in every
    train step, but no constraint of theirs runs."""

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
        head = self.layers[-1].trainable_variables
        self.optimizer.apply(tape.gradient(loss, head), head)
        return {"loss": loss}


def head_only(kind):
    model = ht.model_of(kind, seed=3)
    return HeadOnly(model.layers, name="head_only")


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_a_pass_no_engine_summed_goes_to_the_accumulator(jit_compile):
    model = ht.compiled(head_only("Dense"), keras.optimizers.SGD(0.1))
    model.jit_compile = jit_compile
    x, y = ht.noise(ht.INPUT_SHAPES["Dense"], n=3 * BATCH, seed=2)
    callback = SynapticScalingCallback(center_inputs=False, hold_norms=False)
    model.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[callback])

    # The same sums, pass by pass, outside the train step.
    hidden = model.layers[0]
    expected = 0.0
    for start in range(0, len(x), BATCH):
        z = x[start : start + BATCH] @ hidden.kernel.numpy() + hidden.bias.numpy()
        expected = expected + keras.ops.convert_to_numpy(
            rule.sensor_statistics(z, np.maximum(z, 0), hidden.bias, -1)
        )
    for layer, state in callback.bindings:
        values = state.numpy_values()
        assert values["steps"] == 0, f"{layer.name} was stepped"
        assert values["accumulator"][-1] == len(x), f"{layer.name}: count"
    first = callback.bindings[0][1].numpy_values()["accumulator"]
    np.testing.assert_allclose(first, expected, rtol=1e-5)


def test_the_engine_sums_the_passes_of_its_step_and_leaves_the_accumulator():
    model = ht.compiled(ht.model_of("Dense", seed=3), keras.optimizers.SGD(0.1))
    x, y = ht.noise(ht.INPUT_SHAPES["Dense"], n=3 * BATCH, seed=2)
    callback = SynapticScalingCallback(warmup=0, center_inputs=False, hold_norms=False)
    model.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[callback])
    for layer, state in callback.bindings:
        values = state.numpy_values()
        assert values["steps"] == 3
        assert not np.any(values["accumulator"]), layer.name
        assert np.any(values["log_gain"] != 0.0), f"{layer.name} was not scaled"


def fitted(period, jit_compile):
    model = ht.compiled(ht.model_of("Dense", seed=3), keras.optimizers.SGD(0.1, 0.9))
    model.jit_compile = jit_compile
    x, y = ht.noise(ht.INPUT_SHAPES["Dense"], n=8 * BATCH, seed=4)
    callback = SynapticScalingCallback(
        warmup=0, rate=0.2, period=period, center_inputs=False, hold_norms=False
    )
    model.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[callback])
    return ht.snapshot(model)


@pytest.mark.parametrize(
    "period, jit_compile", [(1, False), (3, False), (1, True)], ids=str
)
def test_recorded_passes_train_bit_for_bit_as_the_accumulator(
    period, jit_compile, monkeypatch
):
    recorded = fitted(period, jit_compile)
    # Outside a recorded train step the sensor writes the accumulator.
    monkeypatch.setattr(call_hooks, "_recorded", lambda: None)
    ht.assert_bit_equal(fitted(period, jit_compile), recorded)


def _checked_flags(monkeypatch, model, data, callbacks=()):
    """The `checked` flags the engines hand the rule in one traced `fit`."""
    from keras_homeostasis import engine

    seen = []
    plain = engine.step_function

    def spying():
        step = plain()

        def run(packed, states, biases, settings, checked=None):
            seen.append(checked)
            return step(packed, states, biases, settings, checked)

        return run

    monkeypatch.setattr(engine, "step_function", spying)
    model.fit(*data, batch_size=BATCH, verbose=0, callbacks=list(callbacks))
    return seen


def test_one_pass_per_step_is_handed_over_as_the_sensor_checked_it(monkeypatch):
    # The rule's own finiteness test is left out only for one pass's sums:
    # a layer called twice per step has its sum tested whole.
    inputs = keras.Input((8,))
    shared = keras.layers.Dense(8, activation="relu", name="shared")
    once = keras.layers.Dense(8, activation="relu", name="once")
    model = keras.Model(inputs, keras.layers.Dense(8)(once(shared(shared(inputs)))))
    model.compile(keras.optimizers.SGD(0.01), "mse")
    callback = SynapticScalingCallback(warmup=0, center_inputs=False, hold_norms=False)
    x = np.random.default_rng(0).normal(size=(2 * BATCH, 8)).astype("f4")
    seen = _checked_flags(monkeypatch, model, (x, x), [callback])
    names = [layer.name for layer, _ in callback.bindings]
    assert seen and all(flags == tuple(n == "once" for n in names) for flags in seen)
    assert "shared" in names


def test_homeostatic_layers_hand_over_their_one_traced_pass(monkeypatch):
    model = ht.model_of("Dense", homeostatic=True, seed=3, warmup=0)
    model = ht.compiled(model, keras.optimizers.SGD(0.01))
    data = ht.noise(ht.INPUT_SHAPES["Dense"], n=2 * BATCH, seed=2)
    seen = _checked_flags(monkeypatch, model, data)
    # One engine per layer, each traced once.
    assert len(seen) == len(ht.states(model)) > 0
    assert all(flags == (True,) for flags in seen)
