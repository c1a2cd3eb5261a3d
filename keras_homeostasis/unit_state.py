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

    def update(self, packed, settings, step_fn=rule.homeostatic_step):
        """One homeostatic step from globally summed statistics `packed`.

        `step_fn` is the pure rule (`rule.homeostatic_step`), or an
        XLA-compiled version of it; the variable writes stay outside it.
        """
        state = [
            ops.convert_to_tensor(v.value)
            for v in (self.activity, self.firing_rate, self.log_gain, self.steps)
        ]
        new = step_fn(packed, *state, settings)
        for name in ("activity", "firing_rate", "log_gain", "factor", "shift", "steps"):
            getattr(self, name).assign(new[name])
        self.accumulator.assign(ops.zeros_like(self.accumulator))

    def scale_kernel(self, kernel):
        """The kernel with each unit's incoming weights (last axis) scaled."""
        return kernel * ops.cast(self.factor, kernel.dtype)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
