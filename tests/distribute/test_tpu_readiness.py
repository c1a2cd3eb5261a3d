"""TPU readiness, by proxy (no TPU here): the homeostatic path holds no host
callback, makes no `merge_call` of its own, and the whole train step compiles
with XLA on one device."""

import contextlib
import inspect

import numpy as np
import pytest
import tensorflow as tf
from graph_inspection import HOST_CALLBACK_OPS
from graph_inspection import all_nodes
from graph_inspection import data
from graph_inspection import installed_callback
from graph_inspection import mirrored
from graph_inspection import mlp
from graph_inspection import one_device_step_graph
from graph_inspection import op_types
from graph_inspection import replica_step_graph

from keras_homeostasis import engine
from keras_homeostasis.settings import validate_settings
from keras_homeostasis.synaptic_scaling_callback import SynapticScalingCallback
from keras_homeostasis.unit_state import UnitState


def scaled_model(scaling, strategy=None):
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = mlp(scaling)
    if scaling == "callback":
        installed_callback(model)
    return model


def assert_no_host_callbacks(graph):
    assert not op_types(graph) & HOST_CALLBACK_OPS
    outside = [n.name for n in all_nodes(graph) if "_xla_outside_compilation" in n.attr]
    assert not outside


@pytest.mark.parametrize("scaling", ["callback", "layers"])
def test_one_device_step_has_no_host_callbacks(scaling):
    assert_no_host_callbacks(one_device_step_graph(scaled_model(scaling)))


@pytest.mark.multi_device
@pytest.mark.parametrize("scaling", ["callback", "layers"])
def test_replica_step_has_no_host_callbacks(scaling):
    strategy = mirrored()
    graph = replica_step_graph(scaled_model(scaling, strategy), strategy)
    assert_no_host_callbacks(graph)


def test_graph_check_detects_a_host_callback():
    # The control: a py_function in a step is seen by the check above.
    @tf.function
    def step(x):
        return tf.py_function(lambda v: v * 2.0, [x], tf.float32)

    graph = step.get_concrete_function(tf.constant(1.0)).graph.as_graph_def()
    with pytest.raises(AssertionError):
        assert_no_host_callbacks(graph)


@pytest.mark.parametrize("scaling", ["callback", "layers"])
def test_whole_train_step_compiles_with_xla_on_one_device(scaling):
    model = scaled_model(scaling)
    x, y = data()
    step = tf.function(model.train_step, jit_compile=True)
    hlo = step.experimental_get_compiler_ir((x[:16], y[:16]))(stage="hlo")
    # The packed statistics of the 16- and 12-unit layers (4 per unit, the
    # examples and a count) are in the XLA module: the homeostatic path is
    # inside the cluster.
    assert "f32[66]" in hlo and "f32[50]" in hlo


@pytest.mark.parametrize("scaling", ["callback", "layers"])
def test_fit_with_jit_compile_scales_on_one_device(scaling):
    model = mlp(scaling)
    model.jit_compile = True
    callbacks = [SynapticScalingCallback(warmup=1)] if scaling == "callback" else []
    x, y = data(n=128)
    model.fit(x, y, batch_size=16, epochs=1, callbacks=callbacks, verbose=0)
    assert model.jit_compile is True
    layer = model.get_layer("hidden0")
    assert int(layer.homeostasis.steps.numpy()) == 8
    factor = layer.homeostasis.factor.numpy()
    assert np.all(np.isfinite(factor)) and np.any(np.abs(factor - 1.0) > 1e-5)


@pytest.mark.multi_device
def test_engine_step_merges_only_through_one_all_reduce(monkeypatch):
    # On TPU, `ReplicaContext.all_reduce` lowers to `cross_replica_sum`; any
    # other `merge_call` on the path would leave the replicated computation.
    strategy = mirrored()
    callers = []
    original = tf.distribute.ReplicaContext.merge_call

    def recording(self, *args, **kwargs):
        callers.append({frame.function for frame in inspect.stack()[1:12]})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(tf.distribute.ReplicaContext, "merge_call", recording)
    settings = validate_settings()
    with strategy.scope():
        states = [UnitState(n) for n in (16, 12, 5)]
    hub = engine.HomeostasisEngine([(s, settings, None) for s in states])

    @tf.function
    def run():
        strategy.run(hub.step)

    run()
    # One merge, inside TF's all_reduce, per replica: all three layers'
    # statistics travel in a single all-reduce.
    assert len(callers) == strategy.num_replicas_in_sync
    assert all("all_reduce" in functions for functions in callers)
