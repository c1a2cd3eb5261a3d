"""Where a layer's units are measured: their real output, on an inference pass.

A `Dense(activation=None)` or Conv layer followed by a parameter-free
activation layer (`ReLU()`, `Activation("relu")`, `LeakyReLU`, `ELU`,
`Softmax`), possibly through inference-time no-ops (`Dropout`,
`GaussianNoise`, ...), has units whose real output is the activation's. In
Sequential and functional models (nested ones included) that activation is
found from the model's graph and applied to the layer's output. A subclassed
model has no graph to read: there a layer's own output is measured.
"""

import keras
from keras.src.ops.function import make_node_key

from keras_homeostasis import layer_selection

ACTIVATIONS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
)
# Identity in an inference pass, so an activation after them still applies.
NO_OPS = (
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
)


def measurement_points(model, layers):
    """For each of `layers`: `(layer to record, activation after it or None)`.

    A layer inside a `TimeDistributed` is recorded at the wrapper's output
    (every time step); the others at their own output.
    """
    wrappers = {
        id(x.layer): x
        for x in layer_selection.all_layers(model)
        if isinstance(x, keras.layers.TimeDistributed)
    }
    sources = [wrappers.get(id(x), x) for x in layers]
    linear = {id(s) for s, x in zip(sources, layers) if _is_linear(x)}
    found = {}
    _walk(model, linear, found)
    return [(s, found.get(id(s))) for s in sources]


def _walk(model, wanted, found):
    for layer in model.layers:
        if id(layer) in wanted:
            found[id(layer)] = _following_activation(model, layer)
        if hasattr(layer, "layers"):
            _walk(layer, wanted, found)


def _is_linear(layer):
    activation = getattr(layer, "activation", None)
    return layer.weights and activation in (None, keras.activations.linear)


def _following_activation(model, layer):
    current = _sole_consumer(model, layer)
    while isinstance(current, NO_OPS):
        current = _sole_consumer(model, current)
    return current if isinstance(current, ACTIVATIONS) else None


def _sole_consumer(model, layer):
    """The one layer of `model` that takes `layer`'s output, or None."""
    if isinstance(model, keras.Sequential):
        index = next(i for i, x in enumerate(model.layers) if x is layer)
        following = model.layers[index + 1 : index + 2]
        return following[0] if following else None
    nodes = getattr(model, "_nodes", None)
    if not nodes:
        return None  # a subclassed model: its graph is not known
    outputs = keras.tree.flatten(model.outputs)
    if any(t._keras_history.operation is layer for t in outputs):
        return None  # the model's caller takes it too
    consumers = [
        node.operation
        for node in layer._outbound_nodes
        if make_node_key(node.operation, node.operation._inbound_nodes.index(node))
        in nodes
    ]
    return consumers[0] if len(consumers) == 1 else None


def real_outputs(model, points, batch):
    """Outputs at `points` (`measurement_points`) on `batch`, in an inference pass.

    Each is the recorded layer's output (its first call, for a layer called
    more than once), passed through the activation after it when there is one.
    """
    layers = [layer for layer, _ in points]
    seen = {}
    saved = [(x, vars(x).get("call")) for x in layers]
    for layer in layers:
        object.__setattr__(layer, "call", _recording(layer, seen))
    try:
        model(batch, training=False)
    finally:
        for layer, call in saved:
            object.__delattr__(layer, "call")
            if call is not None:
                object.__setattr__(layer, "call", call)
    missing = [x.name for x in layers if id(x) not in seen]
    if missing:
        raise ValueError(
            f"Layers {missing} of model '{model.name}' were not called in a "
            "forward pass of the model, so their usage cannot be measured."
        )
    results = []
    for layer, activation in points:
        outputs = seen[id(layer)]
        results.append(outputs if activation is None else activation(outputs))
    return results


def _recording(layer, seen):
    original = layer.call

    def call(*args, **kwargs):
        outputs = original(*args, **kwargs)
        seen.setdefault(id(layer), outputs)
        return outputs

    return call
