"""The homeostatic steps traced into one function run one after another,
with the same values bit for bit (`rule.after`, `step_order`)."""

import gc

import homeostasis_testing as ht
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_homeostasis import rule
from keras_homeostasis import step_order


def _ancestors(tensor):
    """Every operation `tensor` is computed from, in its graph."""
    seen, todo = set(), [tensor.op]
    while todo:
        op = todo.pop()
        if op.name not in seen:
            seen.add(op.name)
            todo.extend(t.op for t in op.inputs)
            todo.extend(op.control_inputs)
    return seen


def test_after_keeps_every_value_bit_for_bit():
    # (Not subnormals: a CPU flushes them to zero in any operation.)
    specials = [0.0, -0.0, 1.5, -2.0, np.inf, -np.inf, np.nan, 3e38, -1e-37]
    value = np.array(specials, "float32")
    for previous in (np.array(s, "float32").reshape(1) for s in specials):
        out = rule.after(tf.constant(value), tf.constant(previous)).numpy()
        np.testing.assert_array_equal(out.view("int32"), value.view("int32"))


def test_a_step_is_traced_after_the_last_one_in_its_graph():
    @tf.function
    def two_steps(first, second):
        assert step_order.after_last(first) is first  # nothing before it
        shift = first * 2.0
        step_order.note(shift)
        chained = step_order.after_last(second)
        assert shift.op.name in _ancestors(chained)
        return chained

    out = two_steps(tf.constant([1.0, -0.0]), tf.constant([-0.0, 4.0]))
    np.testing.assert_array_equal(np.signbit(out.numpy()), [True, False])


def test_eager_steps_and_other_graphs_are_not_chained():
    value = tf.constant([1.0])
    step_order.note(tf.constant([2.0]))  # eagerly: nothing kept
    assert step_order.after_last(value) is value

    @tf.function
    def noted():
        step_order.note(tf.constant([2.0]))
        return tf.constant(0.0)

    @tf.function
    def elsewhere(x):
        assert step_order.after_last(x) is x  # another graph's note
        return x

    noted()
    elsewhere(value)


def test_a_graph_is_not_kept_alive_by_its_last_step():
    gc.collect()
    before = len(step_order._last)
    for _ in range(3):
        tf.function(lambda: step_order.note(tf.constant([1.0])) or 0.0)()
    gc.collect()
    # Graphs of earlier tests may die too; none of these three stays.
    assert len(step_order._last) <= before


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_the_layers_steps_are_chained_in_a_fit(jit_compile):
    # Three homeostatic layers, each with its own engine: each step but
    # the first reads its statistics through `rule.after`, and training is
    # what it was (the callback's equivalence tests hold the values).
    model = ht.compiled(
        ht.model_of("Dense", homeostatic=True, seed=3, warmup=0),
        keras.optimizers.SGD(0.05),
    )
    model.jit_compile = jit_compile
    calls = []
    original = rule.after

    def counted(value, previous):
        calls.append(value.shape)
        return original(value, previous)

    x, y = ht.noise(ht.INPUT_SHAPES["Dense"], n=32, seed=1)
    try:
        rule.after = counted
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    finally:
        rule.after = original
    layers = len(ht.states(model))
    assert layers >= 2 and calls and len(calls) % (layers - 1) == 0
    for _, state in ht.states(model):
        assert int(state.steps.numpy()) == 2
