"""Runs the rule once per optimizer step, inside the compiled train function.

Keras applies each variable's `constraint` right after the optimizer update,
in replica context, once per optimizer step, whatever `steps_per_execution`
is and also under `jit_compile=True`. The engine hangs its work on those
constraints: the first constrained variable in the optimizer's order triggers
one synchronised step for every layer it serves (one all-reduce of all their
statistics), then each kernel and bias constraint applies its layer's factor.
"""

import keras
import tensorflow as tf
from keras import ops

from keras_homeostasis import rule

# The rule's math for all layers, compiled by XLA as one call. Keras turns
# `jit_compile` off under tf.distribute strategies; this keeps the rule
# compiled there (it holds no collective and writes no variable, so XLA
# accepts it).
compiled_steps = tf.function(rule.homeostatic_steps, jit_compile=True)


def step_function():
    """The compiled rule under a strategy; the plain one otherwise.

    On one device the whole train step is already compiled when the user
    asks for `jit_compile=True`, so the plain function is inlined there;
    without it, a CPU runs the plain operations faster than one XLA call.
    """
    return (
        _compiled_on_values if tf.distribute.has_strategy() else rule.homeostatic_steps
    )


def _compiled_on_values(packed, states, biases, settings):
    # Read the (mirrored) variables here, in the replica's graph, so that
    # `compiled_steps` only ever receives tensors. Given the variables
    # themselves, its first trace captured them and later calls with other
    # variables of the same shape (another layer, another model) silently
    # read the first ones.
    states = [{k: tf.identity(v) for k, v in state.items()} for state in states]
    packed = [tf.identity(p) for p in packed]
    biases = [tf.identity(b) for b in biases]
    return compiled_steps(packed, states, biases, settings)


def all_reduce_sum(value):
    """Sums `value` over replicas in replica context; identity otherwise."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


class HomeostasisEngine:
    """One synchronised homeostatic step over several layers' states.

    Args:
        bindings: list of `(UnitState, settings dict, bias variable or None)`.
    """

    def __init__(self, bindings):
        self.bindings = list(bindings)
        for state, settings, _ in self.bindings:
            state.period = settings["period"]

    def step(self):
        # Non-finite statistics (a NaN or inf anywhere in a forward pass: the
        # drive's sums carry it) were dropped by the sensor. A step whose
        # forward pass was finite but whose update was not (an infinite
        # gradient) is counted like any other: its statistics are finite, so
        # the state stays finite, and every later forward pass of the
        # poisoned weights is dropped. No pass over the weights is needed: a
        # finiteness check of the updated kernel cost a tenth of an online
        # step (`docs/distributed.md`).
        accumulators = [state.accumulator for state, _, _ in self.bindings]
        sizes = [int(a.shape[0]) for a in accumulators]
        packed = all_reduce_sum(
            ops.concatenate([ops.convert_to_tensor(a) for a in accumulators], axis=0)
        )
        for group in _groups_by_settings(self.bindings, sizes, packed):
            if group[0][1]["period"] == 1:
                _run_rule(group)
            else:
                _run_rule_every_period(group)


def _run_rule(group, steps=None):
    """One run of the rule on a group's states; writes their new states.

    `steps`, when given, is the optimizer step count each state keeps
    instead of the rule's own count (`period > 1`).
    """
    states = [state for state, _, _, _ in group]
    settings = group[0][1]
    current = [state.current_state() for state in states]
    if steps is not None:
        # The rule counts its own runs: the optimizer steps over the period.
        for state in current:
            state["steps"] = steps // settings["period"] - 1
    new = step_function()(
        [p for _, _, _, p in group],
        current,
        [bias_value(bias, state) for state, _, bias, _ in group],
        settings,
    )
    for state, values in zip(states, new):
        state.write(values if steps is None else {**values, "steps": steps})


def _run_rule_every_period(group):
    """The rule on every `period`-th optimizer step, behind one conditional:
    on the other steps only the step counts move (the sensor counted
    nothing, and the constraints leave the weights as the optimizer did)."""
    states = [state for state, _, _, _ in group]
    # Every state of the group counts the same steps: the first one's.
    steps = states[0].steps + 1

    def count_only():
        for state in states:
            state.steps.assign(steps)

    tf.cond(
        ops.mod(steps, group[0][1]["period"]) == 0,
        lambda: _run_rule(group, steps),
        count_only,
    )


def _groups_by_settings(bindings, sizes, packed):
    """`(state, settings, bias, its packed slice)` lists, one per settings."""
    groups, offset = {}, 0
    for (state, settings, bias), size in zip(bindings, sizes):
        entry = (state, settings, bias, packed[offset : offset + size])
        groups.setdefault(id(settings), []).append(entry)
        offset += size
    return list(groups.values())


def bias_value(bias, state):
    """The bias after the optimizer update, as float32 (zeros when absent)."""
    if bias is None:
        return ops.zeros((state.units,), "float32")
    return ops.cast(ops.convert_to_tensor(bias), "float32")


class KernelScaling(keras.constraints.Constraint):
    """Multiplies each unit's incoming weights (`state.kernel_axis`) by its factor.

    `inner` is the user's own constraint, applied first. When `engine` is set,
    this constraint triggers the engine's step before scaling.
    """

    def __init__(self, state, inner=None, engine=None):
        self.state = state
        self.inner = inner
        self.engine = engine

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        if self.engine is not None:
            self.engine.step()
        return self.state.scale_kernel(w)


class BiasShift(keras.constraints.Constraint):
    """Adds the layer's intrinsic-plasticity shift to its bias."""

    def __init__(self, state, inner=None, engine=None):
        self.state = state
        self.inner = inner
        self.engine = engine

    def __call__(self, b):
        if self.inner is not None:
            b = self.inner(b)
        if self.engine is not None:
            self.engine.step()
        return self.state.shift_bias(b)


def attach_constraints(pairs, engine):
    """Installs scaling constraints on `(layer, state, settings)` triples.

    `pairs` must be in the optimizer's variable order; the first constrained
    variable gets the engine trigger. Returns the variables' former
    constraints so they can be restored.
    """
    saved = []
    first = True
    for layer, state, _ in pairs:
        kernel = layer.kernel
        inner = user_constraint(kernel.constraint)
        saved.append((kernel, inner))
        kernel.constraint = KernelScaling(
            state, inner=inner, engine=engine if first else None
        )
        first = False
        bias = getattr(layer, "bias", None)
        if bias is not None:
            inner = user_constraint(bias.constraint)
            saved.append((bias, inner))
            bias.constraint = BiasShift(state, inner=inner)
    return saved


def user_constraint(constraint):
    """The user's own constraint, under any scaling left by a fit that raised."""
    while isinstance(constraint, (KernelScaling, BiasShift)):
        constraint = constraint.inner
    return constraint
