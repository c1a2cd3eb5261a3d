"""Summary API of the homeostasis TensorBoard plugin.

Example:

```python
writer = tf.summary.create_file_writer("runs/scaling")
with writer.as_default():
    summary.unit_usage("dense", activity, factor=gains, target=0.5, step=100)
```
"""

import numpy as np

from keras_homeostasis import metrics
from keras_homeostasis.tensorboard import metadata


def unit_usage(
    name,
    activity,
    factor=None,
    target=None,
    dead=None,
    step=None,
    description=None,
    firing_rate=None,
    spread=None,
    factor_kind="scale",
):
    """Writes one layer's unit usage at one step.

    Stored: each unit's mean |activity|, its scale factor, the set point,
    its firing rate and pre-activation spread when given, and three layer
    statistics computed here: normalised usage entropy, the coefficient of
    variation of the activities, and the dead fraction.

    Args:
        name: summary name, usually the layer name (name scopes prefix it).
        activity: vector of each unit's mean |activity|, shape `[n]`.
        factor: vector of each unit's cumulative scale factor, or None for
            an unscaled layer (factor 1, and the summary says "not scaled").
        target: the set point: a number, a vector of `n` numbers, or None
            for the layer's mean activity.
        dead: optional boolean vector, True for units counted as dead.
            Default: units whose activity is 0.
        step: the step; defaults to `tf.summary.experimental.get_step()`.
        description: optional Markdown description of the summary.
        firing_rate: optional vector of each unit's firing rate (fraction
            of positive pre-activations, in [0, 1]); None: not measured.
        spread: optional vector of the standard deviation of each unit's
            pre-activation; None: not measured. NaN entries read as "not
            measured" too.
        factor_kind: what `factor` holds: `"scale"`, a cumulative scale
            factor, or `"norm"`, each unit's kernel norm where the rule holds
            it (`hold_norms=True`, `scale_invariant=True`); the dashboard
            labels its chart by it.

    Returns:
        True if a summary was written, False if no default writer is set.
    """
    import tensorflow as tf

    activity = _vector("activity", activity)
    n = activity.shape[0]
    if factor_kind not in metadata.FACTOR_KINDS:
        raise ValueError(
            f"Received an invalid value for `factor_kind`, expected one of "
            f"{metadata.FACTOR_KINDS}. Received: factor_kind={factor_kind!r}"
        )
    scaled = factor is not None
    factor = np.ones(n, "float32") if factor is None else _vector("factor", factor, n)
    target = _target(target, activity)
    dead = activity <= 0 if dead is None else _vector("dead", dead, n).astype(bool)
    statistics = [
        metrics.usage_entropy(activity),
        metrics.coefficient_of_variation(activity),
        float(np.mean(dead)),
    ]
    packed = metadata.pack(
        activity,
        factor,
        target,
        statistics,
        firing_rate=_optional_vector("firing_rate", firing_rate, n),
        spread=_optional_vector("spread", spread, n),
    )
    with tf.summary.experimental.summary_scope(
        name, "homeostasis_summary", values=[step]
    ) as (tag, _):
        return tf.summary.write(
            tag=tag,
            tensor=tf.constant(packed),
            step=step,
            metadata=summary_metadata(n, scaled, description, factor_kind),
        )


def input_mean(name, mean, step=None):
    """Writes the input mean a centered layer subtracts (`center_inputs=True`)
    as a histogram tagged `<name>/input_mean`, one value per input feature or
    channel: TensorBoard's Histograms and Distributions dashboards show how it
    settles."""
    import tensorflow as tf

    mean = _vector("mean", mean)
    return tf.summary.histogram(f"{name}/input_mean", mean, step=step)


def step_scale(name, scale, step=None):
    """Writes, for a layer whose rule holds each unit's kernel norm, each
    unit's held norm over its direction vector's length as a histogram
    tagged `<name>/step_scale`: the factor by which the optimizer's steps
    of the direction vectors reach the kernel. Steps across a vector
    lengthen it, so the scale falls as training goes on (and
    `norm_relaxation` brings it back toward 1)."""
    import tensorflow as tf

    scale = _vector("scale", scale)
    return tf.summary.histogram(f"{name}/step_scale", scale, step=step)


def summary_metadata(units, scaled, description=None, factor_kind="scale"):
    """The `SummaryMetadata` of a layer summary, tensor data class."""
    from tensorboard.compat.proto import summary_pb2

    return summary_pb2.SummaryMetadata(
        summary_description=description or "",
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME,
            content=metadata.content(units, scaled, factor_kind),
        ),
        # Without a data class the data provider never returns the series.
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    )


def _vector(name, value, units=None):
    array = np.asarray(value, "float32")
    if array.ndim != 1 or array.shape[0] < 1:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected a non-empty "
            f"vector. Received: {name} of shape {array.shape}"
        )
    if units is not None and array.shape[0] != units:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected {units} values "
            f"(one per unit). Received: {name} of shape {array.shape}"
        )
    return array


def _optional_vector(name, value, units):
    return None if value is None else _vector(name, value, units)


def _target(target, activity):
    n = activity.shape[0]
    if target is None:
        return np.full(n, np.mean(activity), "float32")
    array = np.asarray(target, "float32")
    if array.ndim == 0:
        return np.full(n, array, "float32")
    return _vector("target", array, n)
