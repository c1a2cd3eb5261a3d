"""Load-balancing metrics: how equally a layer's units are used.

For per-unit mean activities `a_i` (mean |output| over a data set, conv
channels pooled over space): usage `p_i = a_i / sum_j a_j`; normalised usage
entropy `H(p) / log(n)` (1.0 = perfectly balanced); coefficient of variation
`std(a) / mean(a)`; Gini coefficient of `a`; dead fraction = share of units
never positive on the data set.

Degenerate inputs follow one convention: activities must be a non-empty,
non-negative vector (a `ValueError` names what is wrong otherwise); a
non-finite activity (a diverged network) gives NaN; a layer whose units are
all silent (every activity 0) has no usage distribution, so its entropy, CV
and Gini are NaN, never a value that reads as "balanced"; one unit is
trivially balanced (entropy 1, CV 0, Gini 0).
"""

import contextlib
import math

import keras
import numpy as np
from keras import ops

from keras_homeostasis import layer_selection
from keras_homeostasis import rule
from keras_homeostasis.metrics import probe


def checked_activity(activity, name="activity"):
    """`activity` as a float32 vector; raises `ValueError` on bad input."""
    a = np.asarray(ops.convert_to_numpy(activity), "float64")
    if a.ndim != 1:
        raise ValueError(
            f"Expected `{name}` to be a vector of per-unit values. "
            f"Received: {name} with shape {a.shape}"
        )
    if a.size == 0:
        raise ValueError(f"Expected `{name}` to hold at least one unit. Received: []")
    if np.any(a < 0):
        raise ValueError(
            f"Expected non-negative `{name}` (mean |output|). "
            f"Received: {name}={a.tolist()}"
        )
    return ops.convert_to_tensor(a.astype("float32"))


def _no_value(a):
    """True when the metrics have no meaningful value: NaN/inf or all silent."""
    values = ops.convert_to_numpy(a)
    if not np.all(np.isfinite(values)):
        return True
    return values.shape[-1] > 1 and float(np.max(values)) <= 0.0


def usage_entropy(activity):
    """Normalised entropy of the usage distribution, in [0, 1] (NaN if all silent)."""
    a = checked_activity(activity)
    n = a.shape[-1]
    if _no_value(a):
        return math.nan
    if n < 2:
        return 1.0
    p = a / ops.maximum(ops.sum(a), rule.EPSILON)
    h = -ops.sum(ops.where(p > 0, p * ops.log(ops.maximum(p, rule.EPSILON)), 0.0))
    return float(h / np.log(n))


def coefficient_of_variation(activity):
    """Standard deviation over mean of the per-unit activities (NaN if all silent)."""
    a = checked_activity(activity)
    if _no_value(a):
        return math.nan
    return float(ops.std(a) / ops.maximum(ops.mean(a), rule.EPSILON))


def gini(activity):
    """Gini coefficient of the activities (0 = equal use; NaN if all silent)."""
    a = ops.sort(checked_activity(activity))
    if _no_value(a):
        return math.nan
    n = a.shape[-1]
    ranks = ops.arange(1, n + 1, dtype="float32")
    total = ops.maximum(ops.sum(a), rule.EPSILON)
    return float(ops.sum((2.0 * ranks - n - 1.0) * a) / (n * total))


def dead_fraction(positive_counts):
    """Fraction of units that were never positive (counts of `y > 0`)."""
    counts = checked_activity(positive_counts, "positive_counts")
    if not np.all(np.isfinite(ops.convert_to_numpy(counts))):
        return math.nan
    return float(ops.mean(ops.cast(counts <= 0, "float32")))


def sorted_activity(activity):
    """Per-unit activities sorted from most to least used (numpy array)."""
    return np.sort(np.asarray(ops.convert_to_numpy(activity), "float64"))[::-1]


def layer_statistics(model, data, layers=None, batch_size=256, steps=None):
    """Per-layer `(mean |y| per unit, count of y > 0 per unit)` on `data`.

    `data` is an array of inputs, a `(x, y)` tuple or a `tf.data.Dataset` of
    inputs or `(x, y)` pairs. `layers` (names) defaults to every Dense/Conv
    layer except the output layers. `y` is each unit's real output: a layer
    without activation followed by an activation layer is measured after it
    (see `keras_homeostasis.metrics.probe`; in a subclassed model, whose
    graph is not known, the layer's own output is measured).
    """
    chosen = _layers_to_probe(model, layers)
    points = probe.measurement_points(model, chosen)
    sums = [None] * len(chosen)
    with _not_collecting(model):
        for batch in _batches(data, batch_size, steps):
            outputs = probe.real_outputs(model, points, batch)
            for k, (layer, y) in enumerate(zip(chosen, outputs)):
                packed = rule.output_statistics(y, layer_selection.unit_axis(layer))
                packed = ops.convert_to_numpy(packed).astype("float64")
                sums[k] = packed if sums[k] is None else sums[k] + packed
    if sums and sums[0] is None:
        raise ValueError(
            "Expected `data` to hold at least one example: the usage of a layer "
            f"cannot be measured on an empty data set. Received: {_describe(data)}"
        )
    result = {}
    for layer, packed in zip(chosen, sums):
        n = (packed.shape[0] - 1) // 2
        result[layer.name] = (packed[:n] / max(packed[-1], 1.0), packed[n : 2 * n])
    return result


def unit_statistics(model, data, layers=None, batch_size=256, steps=None):
    """Per-layer `{"activity", "firing_rate", "spread"}` vectors on `data`.

    The layers, `data` and real outputs `y` are those of `layer_statistics`.
    `activity` is each unit's mean |y|, `firing_rate` its fraction of
    `y > 0`, `spread` the standard deviation of its pre-activation. The
    pre-activation is seen only where the layer has no activation of its own
    (`Dense(activation=None)` followed by `BatchNormalization` or `ReLU()`):
    the layer's output is then its pre-activation. For a layer with a
    built-in activation (`Dense(activation="relu")`) `spread` is NaN.
    """
    chosen = _layers_to_probe(model, layers)
    points = probe.measurement_points(model, chosen)
    # Record each layer's own output; its activation is applied below.
    own_outputs = [(recorded, None) for recorded, _ in points]
    sums = [None] * len(chosen)
    with _not_collecting(model):
        for batch in _batches(data, batch_size, steps):
            outputs = probe.real_outputs(model, own_outputs, batch)
            for k, (layer, z) in enumerate(zip(chosen, outputs)):
                activation = points[k][1]
                y = z if activation is None else activation(z)
                packed = _moment_sums(z, y, layer_selection.unit_axis(layer))
                sums[k] = packed if sums[k] is None else sums[k] + packed
    if sums and sums[0] is None:
        raise ValueError(
            "Expected `data` to hold at least one example: the usage of a layer "
            f"cannot be measured on an empty data set. Received: {_describe(data)}"
        )
    return {
        layer.name: _moments(packed, _has_own_activation(layer))
        for layer, packed in zip(chosen, sums)
    }


def _moment_sums(z, y, unit_axis):
    """Per-unit `[sum|y|, #(y>0), sum z, sum z^2]` and the count, in float64."""

    def per_unit(x):
        x = np.asarray(ops.convert_to_numpy(x), "float64")
        return np.moveaxis(x, unit_axis, -1).reshape(-1, x.shape[unit_axis])

    z, y = per_unit(z), per_unit(y)
    sums = [np.abs(y).sum(0), (y > 0).sum(0), z.sum(0), np.square(z).sum(0)]
    return np.concatenate(sums + [[z.shape[0]]])


def _moments(packed, own_activation):
    n = (packed.shape[0] - 1) // 4
    count = max(packed[-1], 1.0)
    mean, square = packed[2 * n : 3 * n] / count, packed[3 * n : 4 * n] / count
    spread = np.sqrt(np.maximum(square - np.square(mean), 0.0))
    return {
        "activity": packed[:n] / count,
        "firing_rate": packed[n : 2 * n] / count,
        "spread": np.full(n, np.nan) if own_activation else spread,
    }


def _has_own_activation(layer):
    """True unless the layer's output is its pre-activation."""
    activation = getattr(layer, "activation", "unknown")
    return activation not in (None, keras.activations.linear)


def _describe(data):
    shape = getattr(data, "shape", None)
    if shape is not None:
        return f"data with shape {tuple(shape)}"
    return f"data={data!r}"[:200]


@contextlib.contextmanager
def _not_collecting(model):
    # During `fit`, a SynapticScalingCallback counts Conv passes it cannot
    # tell are inference (the probe below is a model of its own): pause
    # every homeostatic state of the model while probing.
    states = [
        getattr(x, "homeostasis", None) for x in layer_selection.all_layers(model)
    ]
    states = [s for s in states if hasattr(s, "collecting")]
    saved = [float(s.collecting.numpy()) for s in states]
    for state in states:
        state.collecting.assign(0.0)
    try:
        yield
    finally:
        for state, value in zip(states, saved):
            state.collecting.assign(value)


def _layers_to_probe(model, layers):
    everything = layer_selection.all_layers(model)
    if layers is not None:
        names = [layers] if isinstance(layers, str) else list(layers)
        known = {x.name for x in everything}
        unknown = [x for x in names if x not in known]
        if unknown:
            raise ValueError(
                f"Expected `layers` to name layers of model '{model.name}'. "
                f"Received: layers={layers!r}, with no layer named {unknown}"
            )
        return [x for x in everything if x.name in set(names)]
    excluded = {id(x) for x in layer_selection.output_layers(model)}
    return [
        x
        for x in everything
        if layer_selection.is_measurable(x) and id(x) not in excluded
    ]


def _batches(data, batch_size, steps):
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        iterator = iter(data)
    else:
        x = data[0] if isinstance(data, tuple) else data
        if x is None or not keras.tree.flatten(x):
            raise ValueError(
                "Expected `data` to be an array of inputs, an `(x, y)` tuple or a "
                f"tf.data.Dataset. Received: {_describe(data)}"
            )
        size = len(keras.tree.flatten(x)[0])
        iterator = (
            keras.tree.map_structure(lambda a, i=i: a[i : i + batch_size], x)
            for i in range(0, size, batch_size)
        )
    for k, batch in enumerate(iterator):
        if steps is not None and k >= steps:
            break
        yield batch[0] if isinstance(batch, tuple) else batch
