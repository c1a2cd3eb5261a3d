"""Per-layer homeostatic state: the statistics and gains of one layer's units."""

import keras
from keras import ops

from keras_homeostasis import rule


@keras.saving.register_keras_serializable(package="keras_homeostasis")
class UnitState(keras.layers.Layer):
    """Non-trainable variables holding one layer's homeostatic state.

    It is never called on tensors: it is a container that Keras saving knows
    how to walk, so `.keras` files, `save_weights` checkpoints and
    `BackupAndRestore` keep every statistic. All variables are float32 (int64
    for the step counter), whatever the dtype policy of the layer it serves.

    Variables:
        accumulator: this replica's `[sum|y|, #(y>0), count]` since the last step.
        activity: trace of each unit's mean |output| (`a_i`).
        firing_rate: trace of each unit's fraction of positive outputs (`f_i`).
        log_gain: cumulative log factor applied to each unit (`G_i`).
        factor: the factor applied at the last step (`s_i`).
        shift: the bias increment applied at the last step.
        steps: optimizer steps seen (statistics counted).
        collecting: 1.0 while forward passes should be counted, else 0.0.

    Args:
        units: number of units (Dense units or convolution filters).
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(
                "Received an invalid value for `units`, expected a positive "
                f"integer. Received: units={units!r}"
            )
        self.units = units
        self._create_state()
        self.built = True

    def _vector(self, name, value):
        return self.add_weight(
            shape=(self.units,),
            initializer=keras.initializers.Constant(value),
            trainable=False,
            autocast=False,
            dtype="float32",
            name=name,
        )

    def _create_state(self):
        self.accumulator = self.add_weight(
            shape=(2 * self.units + 1,),
            initializer="zeros",
            trainable=False,
            autocast=False,
            dtype="float32",
            name="accumulator",
        )
        self.activity = self._vector("activity", 0.0)
        self.firing_rate = self._vector("firing_rate", 0.0)
        self.log_gain = self._vector("log_gain", 0.0)
        self.factor = self._vector("factor", 1.0)
        self.shift = self._vector("shift", 0.0)
        self.steps = self.add_weight(
            shape=(), initializer="zeros", trainable=False, dtype="int64", name="steps"
        )
        self.collecting = self.add_weight(
            shape=(),
            initializer="ones",
            trainable=False,
            autocast=False,
            dtype="float32",
            name="collecting",
        )

    def accumulate(self, outputs, unit_axis=-1):
        """Adds one forward pass's per-unit sums (no-op while not collecting)."""
        packed = ops.stop_gradient(rule.unit_axis_reduction(outputs, unit_axis))
        # A non-finite batch is dropped here so it never reaches the traces.
        packed = ops.where(rule.is_usable(packed), packed, ops.zeros_like(packed))
        self.accumulator.assign_add(packed * self.collecting)

    def update(self, packed, settings):
        """One homeostatic step from globally summed statistics `packed`."""
        usable = rule.is_usable(packed)
        mean_activity, rate, _ = rule.split_statistics(packed)
        initialized = self.steps > 0
        activity = rule.update_trace(
            self.activity, mean_activity, settings["momentum"], initialized
        )
        firing = rule.update_trace(
            self.firing_rate, rate, settings["momentum"], initialized
        )
        steps = self.steps + 1
        due = ops.logical_and(
            steps > settings["warmup"], ops.mod(steps, settings["period"]) == 0
        )
        log_s, shift = self._factors(activity, firing, settings)
        apply_now = ops.logical_and(usable, due)
        log_s = ops.where(apply_now, log_s, ops.zeros_like(log_s))
        shift = ops.where(apply_now, shift, ops.zeros_like(shift))
        factor = ops.exp(log_s)
        self.activity.assign(ops.where(usable, activity * factor, self.activity))
        self.firing_rate.assign(ops.where(usable, firing, self.firing_rate))
        self.log_gain.assign(self.log_gain + log_s)
        self.factor.assign(factor)
        self.shift.assign(shift)
        self.steps.assign(ops.where(usable, steps, self.steps))
        self.accumulator.assign(ops.zeros_like(self.accumulator))

    def _factors(self, activity, firing, settings):
        rho = rule.set_point(activity, settings["target"])
        log_s = rule.log_factors(
            activity,
            firing,
            rho,
            settings["rate"],
            settings["max_step"],
            settings["silent_rate"],
        )
        if settings["target"] is None:
            live = rule.is_live(activity, firing, settings["silent_rate"])
            log_s = rule.preserve_total(log_s, activity, live)
        _, log_s = rule.bound_cumulative(
            self.log_gain, log_s, settings["min_gain"], settings["max_gain"]
        )
        shift = rule.revive_shift(
            activity, firing, settings["silent_rate"], settings["revive"]
        )
        return log_s, shift

    def scale_kernel(self, kernel):
        """The kernel with each unit's incoming weights (last axis) scaled."""
        return kernel * ops.cast(self.factor, kernel.dtype)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
