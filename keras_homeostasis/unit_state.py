"""Per-layer homeostatic state: the statistics and gains of one layer's units."""

import keras
from keras import ops

from keras_homeostasis import rule

# Variables of a state saved by the first release (before the drive traces).
LEGACY_VARIABLES = 8


@keras.saving.register_keras_serializable(package="keras_homeostasis")
class UnitState(keras.layers.Layer):
    """Non-trainable variables holding one layer's homeostatic state.

    It is never called on tensors: it is a container that Keras saving knows
    how to walk, so `.keras` files, `save_weights` checkpoints and
    `BackupAndRestore` keep every statistic. All variables are float32 (int64
    for the step counter), whatever the dtype policy of the layer it serves.

    Variables (traces start at zero and are bias-corrected by `steps`):
        accumulator: this replica's packed sums (`rule.sensor_statistics`)
            since the last step.
        activity: trace of each unit's mean |output|.
        firing_rate: trace of each unit's fraction of positive pre-activations.
        log_gain: cumulative log factor applied to each unit's kernel.
        factor: the kernel factor applied at the last step (`s_i`).
        shift: the bias increment applied at the last step.
        steps: optimizer steps seen (statistics counted).
        collecting: 1.0 while forward passes should be counted, else 0.0.
        drive_mean, drive_square: traces of the first two moments of each
            unit's drive `u_i = w_i . x` (its pre-activation without bias).

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
        # The kernel axis holding the units: -2 for transposed convolutions.
        # Set by whoever binds the state to a layer; not saved (the layer
        # kind tells it again).
        self.kernel_axis = -1
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
            shape=(rule.packed_size(self.units),),
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
        # Appended last so files saved by the first release keep their order.
        self.drive_mean = self._vector("drive_mean", 0.0)
        self.drive_square = self._vector("drive_square", 0.0)

    def accumulate(self, preactivation, outputs, bias=None, unit_axis=-1):
        """Adds one forward pass's per-unit sums (no-op while not collecting)."""
        packed = ops.stop_gradient(
            rule.sensor_statistics(preactivation, outputs, bias, unit_axis)
        )
        # A non-finite batch is dropped here so it never reaches the traces.
        packed = ops.where(rule.is_usable(packed), packed, ops.zeros_like(packed))
        self.accumulator.assign_add(packed * self.collecting)

    def current_state(self):
        """The rule's state as a dict of tensors (`rule.homeostatic_step`)."""
        names = rule.TRACES + ("log_gain", "steps")
        return {
            name: ops.convert_to_tensor(getattr(self, name).value) for name in names
        }

    def update(self, packed, bias, settings, step_fn=rule.homeostatic_step):
        """One homeostatic step from globally summed statistics `packed`.

        `bias` is the layer's bias value after the optimizer update (zeros if
        it has none). `step_fn` is the pure rule (`rule.homeostatic_step`),
        or an XLA-compiled version of it; the variable writes stay outside it.
        """
        new = step_fn(packed, self.current_state(), bias, settings)
        for name in rule.TRACES + ("log_gain", "factor", "shift", "steps"):
            getattr(self, name).assign(new[name])
        self.accumulator.assign(ops.zeros_like(self.accumulator))

    def estimates(self, momentum):
        """The bias-corrected traces: each unit's mean |output| (`activity`),
        firing rate, mean pre-activation (`mean`, given `bias`-free drive
        plus nothing: the drive's mean) and drive spread, as tensors.
        """
        steps = self.steps.value
        mean = rule.debiased(self.drive_mean.value, momentum, steps)
        square = rule.debiased(self.drive_square.value, momentum, steps)
        return {
            "activity": rule.debiased(self.activity.value, momentum, steps),
            "firing_rate": rule.debiased(self.firing_rate.value, momentum, steps),
            "drive_mean": mean,
            "spread": rule.drive_spread(mean, square),
        }

    def scale_kernel(self, kernel):
        """The kernel with each unit's incoming weights (`kernel_axis`) scaled."""
        factor = ops.cast(self.factor, kernel.dtype)
        rank = len(kernel.shape)
        if self.kernel_axis % rank != rank - 1:
            shape = [1] * rank
            shape[self.kernel_axis] = self.units
            factor = ops.reshape(factor, shape)
        return kernel * factor

    def shift_bias(self, bias):
        """The bias plus the rule's intrinsic-plasticity shift."""
        return bias + ops.cast(self.shift, bias.dtype)

    def load_own_variables(self, store):
        if len(store.keys()) == LEGACY_VARIABLES:
            self._load_legacy(store)
            return
        super().load_own_variables(store)

    def _load_legacy(self, store):
        # A file of the first release: its traces measured other statistics,
        # so keep its gains and restart the traces (steps 0: warm-up again).
        for index, name in ((1, "activity"), (2, "firing_rate"), (3, "log_gain")):
            getattr(self, name).assign(store[str(index)])
        self.collecting.assign(store["7"])

    def get_config(self):
        return {**super().get_config(), "units": self.units}
