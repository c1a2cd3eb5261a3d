"""Traces a model's real `train_step` and reads the ops of the resulting graph."""

import keras
import numpy as np
import tensorflow as tf

from keras_homeostasis.layers import HomeostaticDense
from keras_homeostasis.synaptic_scaling_callback import SynapticScalingCallback

CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")
# Ops that call back into the Python host: no XLA kernel, no TPU.
HOST_CALLBACK_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


def mirrored():
    """MirroredStrategy over the two logical CPUs set up in conftest."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def mlp(scaling, units=(16, 12)):
    """A compiled ReLU MLP; `scaling` is "callback", "layers" or None."""
    keras.utils.set_random_seed(0)
    dense = HomeostaticDense if scaling == "layers" else keras.layers.Dense
    extra = {"warmup": 1} if scaling == "layers" else {}
    hidden = [
        dense(n, activation="relu", name=f"hidden{i}", **extra)
        for i, n in enumerate(units)
    ]
    model = keras.Sequential(
        [keras.Input((8,)), *hidden, keras.layers.Dense(3, name="output")], name="mlp"
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    # Built here (as `fit` does first) so tracing the step creates no variable.
    model.optimizer.build(model.trainable_variables)
    return model


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8)).astype("float32"), rng.integers(0, 3, n).astype("int32")


def installed_callback(model):
    """A scaling callback whose hooks are installed, as during `fit`."""
    callback = SynapticScalingCallback(warmup=1)
    callback.set_model(model)
    callback.on_train_begin()
    return callback


def replica_step_graph(model, strategy, batch_size=16):
    """GraphDef of `strategy.run(model.train_step)` on one distributed batch."""
    dataset = tf.data.Dataset.from_tensor_slices(data()).batch(batch_size)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

    @tf.function
    def step(batch):
        return strategy.run(model.train_step, args=(batch,))

    return step.get_concrete_function(batch).graph.as_graph_def()


def one_device_step_graph(model, batch_size=16):
    """GraphDef of `model.train_step` on one batch, default strategy."""
    x, y = data()
    step = tf.function(model.train_step)
    return step.get_concrete_function(
        (x[:batch_size], y[:batch_size])
    ).graph.as_graph_def()


def all_nodes(graph_def):
    """Every node of the graph and of every function in its library."""
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    return nodes


def op_types(graph_def):
    return {node.op for node in all_nodes(graph_def)}


def xla_functions(graph_def):
    """Library functions marked `_XlaMustCompile=True`, by name."""
    return {
        f.signature.name: f
        for f in graph_def.library.function
        if "_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b
    }


def calls_to(graph_def, names):
    """Call nodes (anywhere in the graph) whose callee is in `names`."""
    return [
        node
        for node in all_nodes(graph_def)
        if node.op in CALL_OPS and node.attr["f"].func.name in names
    ]
