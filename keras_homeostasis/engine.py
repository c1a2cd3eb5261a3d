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
from keras_homeostasis import step_order
from keras_homeostasis import traced_passes

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


def _compiled_on_values(packed, states, biases, settings, checked=None):
    # Read the (mirrored) variables here, in the replica's graph, so that
    # `compiled_steps` only ever receives tensors. Given the variables
    # themselves, its first trace captured them and later calls with other
    # variables of the same shape (another layer, another model) silently
    # read the first ones.
    states = [{k: tf.identity(v) for k, v in state.items()} for state in states]
    packed = [tf.identity(p) for p in packed]
    biases = [tf.identity(b) for b in biases]
    return compiled_steps(packed, states, biases, settings, checked)


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
        recorded: optional callable returning the forward passes recorded in
            the train step being traced (`{id(state): (state, [sensor
            arguments])}`), or None outside one. Recorded passes are summed
            in the step itself, so no accumulator is written per pass (and,
            at `period > 1`, nothing is sensed between runs).
        on_build: optional callable run in Python each time the step is
            built (once per trace of a compiled train function; every step
            when run eagerly), after the forward pass it serves was built.
    """

    def __init__(self, bindings, recorded=None, on_build=None):
        self.bindings = list(bindings)
        self.recorded = recorded
        self.on_build = on_build
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
        if self.on_build is not None:
            self.on_build()
        recorded = None if self.recorded is None else self.recorded()
        groups = _groups_by_settings(self.bindings)
        if _replicas() > 1:
            # Every replica reaches the one all-reduce, whatever step it is.
            ordered = [binding for group in groups for binding in group]
            sums, _ = _statistics(ordered, recorded)
            packed = all_reduce_sum(ops.concatenate(sums, axis=0))
            pieces = iter(_split(packed, _sizes(ordered)))
            summed = [[next(pieces) for _ in g] for g in groups]
            # Replicas' sums added up are tested whole (`rule.homeostatic_step`).
            collected = [lambda s=s: (s, None) for s in summed]
        else:
            # One device: each state's sums go to the rule as they are (a
            # join and a cut per layer on every step would serve nothing).
            collected = [lambda g=g: _statistics(g, recorded) for g in groups]
        for group, statistics in zip(groups, collected):
            run = _run_rule if group[0][1]["period"] == 1 else _run_rule_every_period
            run(group, statistics, clear=recorded is None)


def _replicas():
    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def _statistics(bindings, recorded):
    """Each state's per-unit sums, in `bindings` order: the passes recorded
    in this train step (the callback's, or a layer's traced into this
    function), else its accumulator; and a tuple of flags, True where the
    sums are one pass's as the sensor checked them (`rule.homeostatic_step`'s
    `checked`)."""
    found = [_state_statistics(state, recorded) for state, _, _ in bindings]
    return [sums for sums, _ in found], tuple(one for _, one in found)


def _state_statistics(state, recorded):
    if recorded is None:
        # A homeostatic layer's passes in this function: the accumulator
        # took them too, and the step clears it unread.
        sums = traced_passes.take(state)
        if not sums:
            return ops.convert_to_tensor(state.accumulator), False
    else:
        _, passes = recorded.pop(id(state), (state, []))
        sums = [state.step_statistics(*arguments) for arguments in passes]
    # `0 + x` as the accumulator adds it: a -0.0 sum becomes 0.0 there too.
    total = ops.zeros_like(state.accumulator)
    for packed in sums:
        total = total + packed
    return total, len(sums) == 1


def _split(packed, sizes):
    """`packed` cut into consecutive pieces of `sizes`."""
    pieces, offset = [], 0
    for size in sizes:
        pieces.append(packed[offset : offset + size])
        offset += size
    return pieces


def _sizes(bindings):
    """The length of each state's packed sums, in `bindings` order."""
    return [int(state.accumulator.shape[0]) for state, _, _ in bindings]


def _run_rule(group, statistics, clear=True, steps=None):
    """One run of the rule on a group's states; writes their new states.

    `statistics()` gives each state's per-unit sums, in group order, and
    their `rule.homeostatic_steps` flags (None: test every one). `steps`,
    when given, is the optimizer step count each state keeps instead of
    the rule's own count (`period > 1`). `clear` empties the accumulators.
    """
    states = [state for state, _, _ in group]
    settings = group[0][1]
    current = [state.current_state() for state in states]
    if steps is not None:
        # The rule counts its own runs: the optimizer steps over the period.
        for state in current:
            state["steps"] = steps // settings["period"] - 1
    packed, checked = statistics()
    packed = list(packed)
    # After the step traced before this one (another layer's, another
    # group's): side by side they passed XLA's CPU hand-over (step_order).
    packed[0] = step_order.after_last(packed[0])
    new = step_function()(
        packed,
        current,
        [bias_value(bias, state) for state, _, bias in group],
        settings,
        checked,
    )
    step_order.note(new[-1]["shift"])
    for state, values in zip(states, new):
        state.write(values if steps is None else {**values, "steps": steps}, clear)


def _run_rule_every_period(group, statistics, clear=True):
    """The rule on every `period`-th optimizer step, behind one conditional:
    on the other steps only the step counts move (the sensor counted
    nothing, and the constraints leave the weights as the optimizer did)."""
    states = [state for state, _, _ in group]
    # Every state of the group counts the same steps: the first one's.
    steps = states[0].steps + 1

    def count_only():
        for state in states:
            state.steps.assign(steps)

    tf.cond(
        ops.mod(steps, group[0][1]["period"]) == 0,
        lambda: _run_rule(group, statistics, clear, steps),
        count_only,
    )


def _groups_by_settings(bindings):
    """`(state, settings, bias)` lists, one per settings dict."""
    groups = {}
    for state, settings, bias in bindings:
        groups.setdefault(id(settings), []).append((state, settings, bias))
    return list(groups.values())


def bias_value(bias, state):
    """The bias after the optimizer update, as float32 (zeros when absent);
    for a centered plain layer, the centered layer's bias it stands for."""
    if bias is None:
        return ops.zeros((state.units,), "float32")
    if state.centering is not None:
        return state.centering.centered_bias(ops.convert_to_tensor(bias))
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
    """Adds the layer's intrinsic-plasticity shift to its bias; for a
    centered plain layer also what its `kernel`'s change (already
    constrained: the optimizer's step and the rule's factor) did to each
    unit's drive at the input mean (`InputCentering.compensate`)."""

    def __init__(self, state, inner=None, engine=None, kernel=None):
        self.state = state
        self.inner = inner
        self.engine = engine
        self.kernel = kernel

    def __call__(self, b):
        if self.inner is not None:
            b = self.inner(b)
        if self.engine is not None:
            self.engine.step()
        b = self.state.shift_bias(b)
        if self.state.centering is None:
            return b
        return self.state.centering.compensate(b, self.kernel)


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
            bias.constraint = BiasShift(state, inner=inner, kernel=kernel)
    return saved


def user_constraint(constraint):
    """The user's own constraint, under any scaling left by a fit that raised."""
    while isinstance(constraint, (KernelScaling, BiasShift)):
        constraint = constraint.inner
    return constraint
