"""Per-layer homeostatic state: the statistics and gains of one layer's units."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_homeostasis import rule
from keras_homeostasis.validation import positive_int
from keras_homeostasis.weight_normalization import NORM_EPSILON

# Variables of a state saved by the first release (before the drive traces).
LEGACY_VARIABLES = 8


# Rows of the `traces` variable: the rule's traces, then what it keeps of
# the last step. One variable instead of one per vector: every variable a
# compiled step writes costs about as much as a small layer's whole update.
ROWS = rule.TRACES + ("log_gain", "factor", "shift")
# The variables of a state saved before `traces` packed them, in that order.
UNPACKED_VARIABLES = (
    "accumulator",
    "activity",
    "firing_rate",
    "log_gain",
    "factor",
    "shift",
    "steps",
    "collecting",
    "drive_mean",
    "drive_square",
)


@keras.saving.register_keras_serializable(package="keras_homeostasis")
class UnitState(keras.layers.Layer):
    """Non-trainable variables holding one layer's homeostatic state.

    It is never called on tensors: it is a container that Keras saving knows
    how to walk, so `.keras` files, `save_weights` checkpoints and
    `BackupAndRestore` keep every statistic. All variables are float32 (int64
    for the step counter), whatever the dtype policy of the layer it serves.

    Variables (traces start at zero and are bias-corrected by `steps`):
        accumulator: this replica's packed sums (`rule.sensor_statistics`,
            with the examples and the count) since the last step.
        traces: one row per unit vector named in `ROWS`, each readable as an
            attribute (`state.activity`, a tensor):
            activity: trace of each unit's mean |output|;
            firing_rate: trace of each unit's fraction of positive
                pre-activations;
            drive_mean, drive_square: traces of the first two moments of
                each unit's drive `u_i = w_i . x` (its pre-activation
                without bias);
            log_gain: cumulative log factor applied to each unit's kernel
                (a scale-invariant layer: the log of each unit's kernel norm);
            factor: the kernel factor applied at the last step (`s_i`);
            shift: the bias increment applied at the last step.
        steps: optimizer steps seen (statistics counted); at `period` > 1
            every optimizer step, the rule's runs being `steps // period`.
        collecting: 1.0 while forward passes should be counted, else 0.0.

    Args:
        units: number of units (Dense units or convolution filters).
        log_gain: initial `log_gain` row (default zeros). Part of the
            initializer, not a later write: Keras builds a subclassed
            model's layers in a scope that discards variable writes.
        centering: the callback's `InputCentering` of a plain layer whose
            units' offsets it holds against kernel changes, or None.
        held: the callback's `HeldNorms` of a plain layer whose kernel
            norms the rule holds (`hold_norms=True`), or None.
    """

    def __init__(self, units, log_gain=None, centering=None, held=None, **kwargs):
        super().__init__(**kwargs)
        self.units = positive_int("units", units)
        self.centering = centering
        self.held = held
        # The kernel axis holding the units: -2 for transposed convolutions.
        # Set by whoever binds the state to a layer; not saved (the layer
        # kind tells it again).
        self.kernel_axis = -1
        # Optimizer steps per run of the rule: set, with the kernel axis,
        # by whoever binds the state. Above 1, `steps` counts every
        # optimizer step and only every `period`-th one is sensed and scaled.
        self.period = 1
        self._initial_log_gain = log_gain
        # False for a scale-invariant layer: the rule's factors go to its
        # gains (`log_gain`), never to its kernel, whose norms only relax
        # toward the gains by `norm_relaxation` per optimizer step.
        self.scales_kernel = True
        self.norm_relaxation = 0.0
        self._create_state()
        self.built = True

    def _create_state(self):
        self.accumulator = float_state(
            self, "accumulator", (rule.packed_size(self.units),), "zeros"
        )
        initial = np.zeros((len(ROWS), self.units), "float32")
        initial[ROWS.index("factor")] = 1.0
        if self._initial_log_gain is not None:
            initial[ROWS.index("log_gain")] = self._initial_log_gain
        self.traces = float_state(
            self, "traces", initial.shape, keras.initializers.Constant(initial)
        )
        self.steps = self.add_weight(
            shape=(), initializer="zeros", trainable=False, dtype="int64", name="steps"
        )
        self.collecting = float_state(self, "collecting", (), "ones")

    def __getattr__(self, name):
        # `state.activity`, `state.log_gain`...: one row of `traces`.
        if name in ROWS and "traces" in vars(self):
            return self.row(name)
        raise AttributeError(f"'UnitState' object has no attribute {name!r}")

    def row(self, name):
        """The current value of one row of `traces` (`ROWS`), as a tensor."""
        return ops.convert_to_tensor(self.traces)[ROWS.index(name)]

    def accumulate(self, preactivation, outputs, bias=None, unit_axis=-1):
        """Adds one forward pass's per-unit sums (no-op while not collecting,
        and on the optimizer steps between two runs of the rule). Returns
        the sums added, or None at `period > 1`, where they are computed
        behind a conditional."""
        args = (preactivation, outputs, bias, unit_axis)
        if self.period == 1:
            return self._add_statistics(*args)
        # The statistics of a step the rule will not run on are not computed.
        sensed = ops.mod(self.steps + 1, self.period) == 0

        def add():
            self._add_statistics(*args)

        tf.cond(sensed, add, lambda: None)
        return None

    def is_scaling_now(self):
        """True on the optimizer steps the rule ran on (`period`), once its
        step has been written: what the kernel and bias constraints ask."""
        return ops.mod(self.steps, self.period) == 0

    def _on_runs(self, value, neutral):
        """`value` on the steps the rule ran on, else `neutral(value)`.

        The constraints choose their factor or shift, not the kernel or
        bias: a conditional that passes a kernel through costs a copy of it.
        """
        if self.period == 1:
            return value
        return tf.cond(self.is_scaling_now(), lambda: value, lambda: neutral(value))

    def _add_statistics(self, preactivation, outputs, bias, unit_axis):
        packed = self.statistics(preactivation, outputs, bias, unit_axis)
        self.accumulator.assign_add(packed)
        return packed

    def statistics(self, preactivation, outputs, bias, unit_axis):
        """One forward pass's per-unit sums, as `accumulate` adds them: the
        `step_statistics` while collecting, zeros while not."""
        packed = self.step_statistics(preactivation, outputs, bias, unit_axis)
        return packed * self.collecting

    def step_statistics(self, preactivation, outputs, bias, unit_axis):
        """One training pass's per-unit sums (zeros where not finite), for
        a step of the rule in the same train step: the callback's recorded
        passes. `collecting` pauses the passes outside a train step
        (evaluation, usage probes), so it is not read here: each variable a
        compiled step reads is one more argument of its call, and costs an
        online step a few microseconds (docs/overhead.md)."""
        packed = ops.stop_gradient(
            rule.sensor_statistics(preactivation, outputs, bias, unit_axis)
        )
        # A non-finite batch is dropped here so it never reaches the traces.
        return ops.where(rule.is_usable(packed), packed, ops.zeros_like(packed))

    def numpy_values(self):
        """Every vector and counter of the state by name, as NumPy arrays."""
        traces = np.asarray(self.traces.numpy())
        found = {name: traces[i] for i, name in enumerate(ROWS)}
        for name in ("accumulator", "steps", "collecting"):
            found[name] = np.asarray(getattr(self, name).numpy())
        return found

    def current_state(self):
        """The rule's state as a dict of tensors (`rule.homeostatic_step`)."""
        traces = ops.convert_to_tensor(self.traces)
        state = {name: traces[i] for i, name in enumerate(ROWS)}
        state["steps"] = ops.convert_to_tensor(self.steps)
        return state

    def update(self, packed, bias, settings):
        """One homeostatic step from globally summed statistics `packed`.

        `bias` is the layer's bias value after the optimizer update (zeros if
        it has none). The engine steps several states at once instead
        (`rule.homeostatic_steps`, then `write`).
        """
        self.write(rule.homeostatic_step(packed, self.current_state(), bias, settings))

    def write(self, new, clear=True):
        """Stores a step's result (`rule.homeostatic_step`); clears the sums
        (unless `clear` is False: the step summed passes it was handed)."""
        self.traces.assign(ops.stack([new[name] for name in ROWS]))
        self.steps.assign(new["steps"])
        if clear:
            self.accumulator.assign(ops.zeros_like(self.accumulator))

    def estimates(self, settings):
        """The bias-corrected traces: each unit's mean |output| (`activity`),
        firing rate, mean drive (`drive_mean`) and drive spread, as tensors,
        under the settings dict the state is stepped with.
        """
        state = self.current_state()
        momentum = rule.trace_momentum(settings)
        steps = state["steps"] // settings["period"]
        mean = rule.debiased(state["drive_mean"], momentum, steps)
        square = rule.debiased(state["drive_square"], momentum, steps)
        return {
            "activity": rule.debiased(state["activity"], momentum, steps),
            "firing_rate": rule.debiased(state["firing_rate"], momentum, steps),
            "drive_mean": mean,
            "spread": rule.drive_spread(mean, square),
        }

    def scale_kernel(self, kernel):
        """The kernel with each unit's incoming weights (`kernel_axis`) scaled."""
        if not self.scales_kernel:
            if self.held is not None:
                log_gain = self.row("log_gain")
                # The gains this step started from: the factor's log back.
                factor = self._on_runs(self.row("factor"), ops.ones_like)
                return self.held.hold(kernel, log_gain, log_gain - ops.log(factor))
            if not self.norm_relaxation:
                return kernel
            log_gain = ops.cast(self.row("log_gain"), kernel.dtype)
            return rule.relaxed_directions(kernel, log_gain, self.norm_relaxation)
        # A product with exactly 1 leaves every weight as it was.
        factor = self.row("factor")
        factor = ops.cast(self._on_runs(factor, ops.ones_like), kernel.dtype)
        rank = len(kernel.shape)
        if self.kernel_axis % rank != rank - 1:
            shape = [1] * rank
            shape[self.kernel_axis] = self.units
            factor = ops.reshape(factor, shape)
        return kernel * factor

    def start_held_steps(self, kernel):
        """A held layer (`hold_norms=True`) takes `kernel`, a weight set or
        loaded between fits, as where its next step starts: the units whose
        incoming weights changed hold their new norms (`HeldNorms.start_from`)."""
        traces = np.array(self.traces.numpy())
        index = ROWS.index("log_gain")
        log_gain = self.held.start_from(kernel, traces[index])
        if np.any(log_gain != traces[index]):
            traces[index] = log_gain
            self.traces.assign(traces)

    def shift_bias(self, bias):
        """The bias plus the rule's intrinsic-plasticity shift."""
        # `b + (-0.0)` is `b` for every `b` (`b + 0.0` turns -0.0 into 0.0).
        shift = self.row("shift")
        shift = self._on_runs(shift, lambda v: ops.full_like(v, -0.0))
        return bias + ops.cast(shift, bias.dtype)

    def load_own_variables(self, store):
        count = len(store.keys())
        if count == LEGACY_VARIABLES:
            self._load_legacy(store)
        elif count == len(UNPACKED_VARIABLES):
            self._load_unpacked(store)
        else:
            saved = {key: self._sums_in_layout(store[key]) for key in store.keys()}
            super().load_own_variables(saved)

    def _sums_in_layout(self, value):
        # Sums saved before they held the examples (`[sums, count]`): the
        # examples slot is added, at 0 (no evidence of silence).
        value = np.asarray(value)
        if value.shape == (rule.packed_size(self.units) - 1,):
            return np.concatenate([value[:-1], [0.0], value[-1:]]).astype("float32")
        return value

    def _load_unpacked(self, store):
        # A file saved with one variable per vector: same values, new layout.
        saved = {name: store[str(i)] for i, name in enumerate(UNPACKED_VARIABLES)}
        self.traces.assign(np.stack([np.asarray(saved[name]) for name in ROWS]))
        for name in ("accumulator", "steps", "collecting"):
            getattr(self, name).assign(self._sums_in_layout(saved[name]))

    def _load_legacy(self, store):
        # A file of the first release: its traces measured other statistics,
        # so keep its gains and restart the traces (steps 0: warm-up again).
        traces = np.array(self.traces.numpy())
        for index, name in ((1, "activity"), (2, "firing_rate"), (3, "log_gain")):
            traces[ROWS.index(name)] = store[str(index)]
        self.traces.assign(traces)
        self.collecting.assign(store["7"])

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def initial_log_norms(kernel):
    """The log of each unit's (last axis) norm of `kernel`, a variable, as a
    NumPy row: where gains that hold the norms start, so the layer first
    computes what it computed before. Read outside any trace: a subclassed
    model builds its layers while tracing a symbolic call, where no variable
    has a value."""
    with tf.init_scope():
        values = np.asarray(kernel.numpy())
    axes = tuple(range(values.ndim - 1))
    return np.log(np.sqrt(np.sum(np.square(values), axis=axes)) + NORM_EPSILON)


def outside_any_trace():
    """A scope that builds variables as if before any `tf.function` trace.

    Keras builds a layer first called inside a traced train step (a
    `Sequential` without an `Input`, a subclassed model never called) in
    that trace, where a variable gets its value only when the step runs;
    state that starts from a kernel's values (the gains that hold its
    norms) needs them while it is built. Built here, the layer and its
    state are what building the model beforehand gives."""
    return tf.init_scope()


def float_state(layer, name, shape, initializer="zeros"):
    """A float32 non-trainable variable of `layer`, never autocast: homeostatic
    state stays float32 under mixed precision."""
    return layer.add_weight(
        shape=shape,
        initializer=initializer,
        trainable=False,
        autocast=False,
        dtype="float32",
        name=name,
    )
