"""Which parts of the homeostatic step XLA compiles, on one device and under
MirroredStrategy (two logical CPUs), read from the traced train step."""

import numpy as np
import pytest
import tensorflow as tf
from graph_inspection import calls_to
from graph_inspection import data
from graph_inspection import installed_callback
from graph_inspection import mirrored
from graph_inspection import mlp
from graph_inspection import one_device_step_graph
from graph_inspection import op_types
from graph_inspection import replica_step_graph
from graph_inspection import xla_functions

from keras_homeostasis import engine
from keras_homeostasis import rule
from keras_homeostasis.settings import validate_settings
from keras_homeostasis.synaptic_scaling_callback import SynapticScalingCallback

VARIABLE_OPS = {
    "ReadVariableOp",
    "AssignVariableOp",
    "AssignAddVariableOp",
    "AssignSubVariableOp",
}
COLLECTIVE_OPS = {"CollectiveReduceV2", "CollectiveReduce", "NcclAllReduce"}


def mirrored_graph(scaling):
    strategy = mirrored()
    with strategy.scope():
        model = mlp(scaling)
    if scaling == "callback":
        installed_callback(model)
    return replica_step_graph(model, strategy)


@pytest.mark.multi_device
@pytest.mark.parametrize("scaling", ["callback", "layers"])
def test_rule_math_is_xla_compiled_under_mirrored_strategy(scaling):
    graph = mirrored_graph(scaling)
    compiled = {
        name: f
        for name, f in xla_functions(graph).items()
        if "homeostatic_step" in name
    }
    # One compiled rule call for all scaled layers, per replica (2); the
    # homeostatic layers each step on their own (2 layers x 2 replicas).
    expected = 2 if scaling == "callback" else 4
    assert len(calls_to(graph, set(compiled))) == expected
    for function in compiled.values():
        body = {node.op for node in function.node_def}
        # The compiled part is pure math on tensors: no variable, no collective.
        assert not body & (VARIABLE_OPS | COLLECTIVE_OPS), body
        assert {"Log", "Exp"} <= body


@pytest.mark.multi_device
def test_plain_model_has_no_compiled_function_under_mirrored_strategy():
    # The control: the compiled calls above come from the homeostatic path.
    assert not xla_functions(mirrored_graph(None))


def test_one_device_inlines_the_rule():
    # On one device the rule is plain graph code, so `jit_compile=True`
    # compiles the whole step as one cluster with the rule inside it.
    assert engine.step_function() is rule.homeostatic_steps
    model = mlp("callback")
    installed_callback(model)
    graph = one_device_step_graph(model)
    assert not xla_functions(graph)
    assert {"Log", "Exp"} <= op_types(graph)


@pytest.mark.multi_device
def test_strategy_selects_the_compiled_step():
    with mirrored().scope():
        assert engine.step_function() is not rule.homeostatic_steps


@pytest.mark.multi_device
def test_equal_width_layers_each_update_their_own_state():
    # Two layers of the same width share one trace of the compiled step:
    # each must still read and write its own state (regression: the first
    # layer's variables were captured by the trace and read for both).
    strategy = mirrored()
    with strategy.scope():
        model = mlp(None, units=(16, 16))
    x, y = data(n=128)
    callback = SynapticScalingCallback(warmup=1)
    model.fit(x, y, batch_size=32, epochs=1, callbacks=[callback], verbose=0)
    (_, first), (_, second) = callback.bindings
    assert int(first.steps.numpy()) == int(second.steps.numpy()) == 4
    assert not np.array_equal(first.activity.numpy(), second.activity.numpy())


def test_compiled_step_lowers_to_hlo():
    units = 5
    settings = validate_settings(warmup=0)
    sums = [np.arange(1.0, units + 1), np.full(units, 3.0)]
    sums += [np.arange(units) - 2.0, np.arange(units) ** 2 + 5.0]
    # Then the examples and the count.
    packed = tf.constant(np.concatenate(sums + [[4.0, 4.0]]), "float32")
    zeros = tf.zeros((units,), "float32")
    state = {name: zeros + 0.25 for name in rule.TRACES}
    state.update(log_gain=zeros, steps=tf.constant(3, "int64"))
    # Two layers in one compiled call, as the engine steps them (replicas'
    # sums: tested whole, `checked` None).
    biases = [zeros + 0.1, zeros]
    args = ([packed, packed * 2.0], [state, state], biases, settings, None)
    hlo = engine.compiled_steps.experimental_get_compiler_ir(*args)(stage="hlo")
    assert "HloModule" in hlo and "log" in hlo
    for compiled, plain in zip(
        engine.compiled_steps(*args),
        [rule.homeostatic_step(p, s, b, settings) for p, s, b in zip(*args[:3])],
    ):
        for name in ("activity", "factor", "log_gain", "shift", "steps"):
            # A shift is a difference from the layer's mean offset: its
            # rounding is float32's on offsets of order 1, not on the shift.
            atol = 1e-6 if name == "shift" else 1e-9
            np.testing.assert_allclose(
                compiled[name], plain[name], rtol=1e-5, atol=atol, err_msg=name
            )
