"""The callback's `hold_norms=True`: the rule owns each unit's kernel norm.

A scale-invariant homeostatic layer computes with each unit's direction
times a gain the rule sets, so the optimizer cannot change a unit's scale.
A plain layer gets the same between steps: after every optimizer step its
kernel is put back, unit by unit, to the norm `exp(log_gain)` that the
rule holds (`rule.held_directions`), so the optimizer's step only turns
each unit's incoming weights and the rule's factors alone change their
length. `log_gain` starts at the log of each unit's initial norm, so the
first step starts from the layer as built; a unit whose weights are set
between fits holds its new norm. Every step thus starts from a kernel
whose norms are `exp(log_gain)`: the hold reads them from the state
instead of summing over the kept kernel.

A scale-invariant layer's optimizer also steps its direction vectors, not
its kernels: their gradient is the kernel's without its part along each
unit, times `gain / |v|`, and each step across a vector lengthens it, so
the layer's turns shrink as training goes on. `HeldNorms` gives a held
kernel the same: the backward pass hands the optimizer the vectors'
gradient (`rule.direction_gradient`), and the constraint takes its step
as the vectors' (`rule.scale_invariant_step`: it keeps the kernel each
step started from and each unit's vector length) before the hold. Under
every optimizer whose step depends on gradients alone, the plain layer
then trains as `scale_invariant=True` layers do.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_homeostasis import layer_selection
from keras_homeostasis import rule
from keras_homeostasis.settings import refuse_gain_bounds
from keras_homeostasis.unit_state import float_state
from keras_homeostasis.unit_state import initial_log_norms
from keras_homeostasis.validation import validate_flag

# Keras optimizers that compute a variable's new value from state they keep
# (Ftrl's linear accumulator, schedule-free's averaged sequences) instead of
# adding a step to its current value: the kernel the hold put back is not
# where their next step starts, and the change is no step of the vectors.
VALUE_SETTING_OPTIMIZERS = ("Ftrl", "ScheduleFreeAdamW")


@keras.saving.register_keras_serializable(package="keras_homeostasis")
class HeldNorms(keras.layers.Layer):
    """The kernel a held layer's last step ended at and each unit's virtual
    direction-vector length: the state of the shrinking turns.

    A container of `UnitState`, never called on tensors. Variables
    (float32): `previous`, a copy of the kernel (its memory: one more
    kernel), and `length`, one per unit, both starting from the kernel as
    built (read outside any trace: a subclassed model builds its layers in
    a scope that discards variable writes).

    Args:
        kernel: the layer's kernel variable, units on the last axis.
    """

    def __init__(self, kernel, **kwargs):
        super().__init__(**kwargs)
        with tf.init_scope():
            values = np.asarray(kernel.numpy(), "float32")
        self.previous = float_state(
            self, "previous", values.shape, keras.initializers.Constant(values)
        )
        length = np.exp(initial_log_norms(kernel)).astype("float32")
        self.length = float_state(
            self, "length", length.shape, keras.initializers.Constant(length)
        )
        # The fraction by which each `log l` moves toward `log_gain` per step
        # (the layers' `norm_relaxation`): set by the callback, not saved.
        self.relaxation = 0.0
        self.built = True

    def direction_kernel(self, kernel):
        """`kernel`'s value (autocast as the layer reads it), with the
        gradient of each unit's direction vector (`rule.direction_gradient`):
        the optimizer steps the kernel as a scale-invariant layer's `v`."""
        length = ops.convert_to_tensor(self.length)

        @ops.custom_gradient
        def identity(w):
            def gradient(*args, upstream=None):
                upstream = args[0] if upstream is None else upstream
                direction = rule.direction_gradient(
                    ops.cast(w, "float32"), ops.cast(upstream, "float32"), length
                )
                return ops.cast(direction, upstream.dtype)

            return w, gradient

        return identity(ops.convert_to_tensor(kernel))

    def hold(self, kernel, log_gain, previous_log_gain):
        """`kernel` after the optimizer's step, taken as the step of the
        direction vectors (`rule.scale_invariant_step`) and put back to the
        norms `exp(log_gain)`; it becomes the next step's `previous`, whose
        norms were `exp(previous_log_gain)` (the held gains the step started
        from: the state knows them, so no pass over `previous` recomputes
        them)."""
        vector, length = rule.scale_invariant_step(
            ops.cast(kernel, "float32"),
            ops.convert_to_tensor(self.previous),
            ops.convert_to_tensor(self.length),
            ops.exp(previous_log_gain),
        )
        held = rule.held_directions(vector, length, log_gain)
        if self.relaxation:
            length = rule.relaxed_length(length, log_gain, self.relaxation)
        self.length.assign(length)
        self.previous.assign(held)
        return ops.cast(held, kernel.dtype)

    def start_from(self, kernel, log_gain):
        """Takes `kernel` as where the next step starts (a fit's first step
        after weights were set or loaded outside training). Returns the
        held gains, `log_gain` (NumPy) with the units whose incoming weights
        changed since the last step set to the log of their new norms: the
        weights a user set are kept, not put back to the old gains."""
        # `.numpy()`: NumPy 2 warns on TensorFlow's `__array__` (no `copy`).
        values = np.asarray(kernel.numpy(), "float32")
        axes = tuple(range(values.ndim - 1))
        changed = np.any(values != self.previous.numpy(), axis=axes)
        self.previous.assign(values)
        log_gain = np.asarray(log_gain, "float32").copy()
        log_gain[changed] = initial_log_norms(kernel)[changed]
        return log_gain


def check_optimizer(optimizer):
    """A ValueError naming `optimizer` (or the one a `LossScaleOptimizer`
    wraps) when it is one of `VALUE_SETTING_OPTIMIZERS`, whose steps do not
    add to the weights; None (a custom loop's model) passes."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    for name in VALUE_SETTING_OPTIMIZERS:
        cls = getattr(keras.optimizers, name, None)
        if cls is not None and isinstance(inner, cls):
            raise ValueError(
                "`hold_norms=True` takes each optimizer step as a change added "
                f"to the kernel; {type(inner).__name__} sets the weights from "
                "state of its own, so the held norms would be lost (the run "
                "turns NaN). Use another optimizer, or pass hold_norms=False. "
                f"Received: optimizer={type(inner).__name__}"
            )


def computing_with(layer, kernel, forward):
    """`forward` (the layer's call) run with `kernel`, a tensor from
    `HeldNorms.direction_kernel`, in place of the layer's kernel variable.

    Keras' Dense, EinsumDense and Conv layers read their kernel through the
    `kernel` property over `_kernel`, which is swapped for the call alone
    (`refusal` names a layer without it). Nothing in the call
    synchronises replicas, so a tf.distribute replica's thread, which only
    yields at those points, never sees another replica's swap.
    """

    def run():
        variable = layer._kernel
        object.__setattr__(layer, "_kernel", kernel)
        try:
            return forward()
        finally:
            object.__setattr__(layer, "_kernel", variable)

    return run


def validate(value, settings):
    """`value` as a flag; a ValueError naming the gain bounds, which act on
    cumulative factors, when it is True and they are set."""
    value = validate_flag("hold_norms", value)
    if value:
        refuse_gain_bounds("hold_norms", settings)
    return value


def refusal(layer):
    """Why `hold_norms=True` cannot hold `layer`'s norms (a sentence naming
    it), or None: it needs a kernel with its units on the last axis (not a
    transposed convolution), read through Keras' `_kernel`."""
    if layer_selection.kernel_unit_axis(layer) != -1:
        return (
            "`hold_norms=True` holds the norms of kernels with their units on "
            f"the last axis; layer {layer.name!r} is a {type(layer).__name__}"
        )
    if not isinstance(getattr(layer, "_kernel", None), keras.Variable):
        return (
            "`hold_norms=True` needs a layer that reads its kernel through "
            f"`_kernel`, as Keras' Dense and Conv layers do; layer {layer.name!r} "
            f"({type(layer).__name__}) does not"
        )
    return None


def initial_log_gain(layer):
    """The log of each unit's kernel norm in `layer`, where its held norm
    starts: a layer `refusal` has no reason against (`layer_modes` checks
    first)."""
    return initial_log_norms(layer.kernel)


def hold(state):
    """Makes `state`'s kernel constraint hold the norms: the rule's factors
    go to `log_gain`, and `state.held` (`HeldNorms`) takes each step and
    puts the kernel back to `exp(log_gain)`."""
    state.scales_kernel = False
