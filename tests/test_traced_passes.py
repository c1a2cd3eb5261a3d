"""A homeostatic layer's step sums the passes traced into its own function;
a step traced elsewhere reads the accumulator, which takes every pass."""

import gc

import homeostasis_testing as ht
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_homeostasis import traced_passes

SETTINGS = {"warmup": 0, "rate": 0.2}


def _layers_model(seed=3):
    model = ht.model_of("Dense", homeostatic=True, seed=seed, **SETTINGS)
    return ht.compiled(model, keras.optimizers.SGD(0.05))


def _fitted(jit_compile, eager_pass_first=False):
    x, y = ht.noise(ht.INPUT_SHAPES["Dense"], n=64, seed=1)
    model = _layers_model()
    model.jit_compile = jit_compile
    if eager_pass_first:
        model(x[:8] * 50.0, training=True)
        assert all(np.any(s.accumulator.numpy()) for _, s in ht.states(model))
    model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    return ht.snapshot(model)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_a_compiled_step_sums_its_own_passes_and_clears_the_rest(jit_compile):
    # A training pass outside `fit` leaves its sums in the accumulator; the
    # first compiled step sums the passes of its own function and clears
    # the accumulator unread, as the callback's steps leave such passes out.
    plain = _fitted(jit_compile)
    after_eager_pass = _fitted(jit_compile, eager_pass_first=True)
    ht.assert_bit_equal(after_eager_pass, plain)
    for key, value in plain.items():
        if key.endswith("homeostasis/accumulator"):
            assert not np.any(value), key
        if key.endswith("homeostasis/steps"):
            assert int(value) == 8, key


def _one_step(split):
    """One SGD step of the layers model in custom `tf.function`s: the
    forward pass and the update in one function, or in two."""
    x, y = ht.noise(ht.INPUT_SHAPES["Dense"], n=16, seed=2)
    model = _layers_model()
    optimizer = model.optimizer
    variables = model.trainable_variables
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def gradients(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, variables)

    def update(grads):
        optimizer.apply(grads, variables)

    if split:
        tf.function(update)(tf.function(gradients)(x, y))
    else:
        tf.function(lambda x, y: update(gradients(x, y)))(x, y)
    return ht.snapshot(model)


def test_a_step_traced_apart_from_its_passes_reads_the_accumulator():
    together = _one_step(split=False)
    apart = _one_step(split=True)
    ht.assert_bit_equal(apart, together)
    steps = [v for k, v in together.items() if k.endswith("homeostasis/steps")]
    assert steps and all(int(v) == 1 for v in steps)
    activity = [v for k, v in together.items() if k.endswith("homeostasis/traces")]
    assert all(np.any(v[0] > 0) for v in activity)  # the pass was sensed


def test_passes_are_taken_once_and_only_in_the_graph_they_were_traced_in():
    state = object()
    traced_passes.record(state, tf.ones(3))  # eagerly: nothing to keep
    assert traced_passes.take(state) == []

    @tf.function
    def traced():
        traced_passes.record(state, tf.ones(3))
        traced_passes.record(state, 2.0 * tf.ones(3))
        first = traced_passes.take(state)
        assert len(first) == 2
        assert traced_passes.take(state) == []
        return first[0] + first[1]

    np.testing.assert_array_equal(traced().numpy(), [3.0, 3.0, 3.0])

    @tf.function
    def elsewhere():
        return len(traced_passes.take(state))

    assert elsewhere() == 0


def test_a_graph_whose_passes_no_step_took_is_not_kept_alive():
    state = object()

    def forward_only():
        @tf.function
        def traced(x):
            traced_passes.record(state, 2.0 * x)
            return x

        traced(tf.ones(3))

    gc.collect()
    before = len(traced_passes._passes)
    for _ in range(3):
        forward_only()
    gc.collect()
    # Graphs of earlier tests may die too; none of these three stays.
    assert len(traced_passes._passes) <= before
