"""Shared behaviour of the homeostatic drop-in layers."""

import functools

import numpy as np
from keras import ops

from keras_homeostasis import engine
from keras_homeostasis import layer_selection
from keras_homeostasis import sensor
from keras_homeostasis import unit_state
from keras_homeostasis.settings import DEFAULTS
from keras_homeostasis.settings import LEGACY
from keras_homeostasis.settings import validate_settings
from keras_homeostasis.unit_state import UnitState

# Added to squared norms so that an all-zero unit gives a zero kernel, not NaN.
NORM_EPSILON = 1e-12


class HomeostaticMixin:
    """Adds synaptic scaling to a Dense or Conv layer class.

    Placed before the Keras class in the bases. The layer takes the
    homeostatic settings as keyword arguments (documented in
    `SynapticScalingCallback`) and `scale_invariant`, keeps one attribute
    per setting, carries its own `UnitState` (`self.homeostasis`) and
    installs the scaling constraints on its kernel and bias when built.
    Statistics are counted only in calls with `training=True` while the
    layer is trainable, so `predict` and `evaluate` never change them.

    With `scale_invariant=True` the layer computes with each unit's
    incoming weights divided by their norm and multiplied by a gain the rule
    owns (`exp(log_gain)` of its state, starting at the initial norm): the
    loss cannot see the kernel's scale, so the optimizer sets each unit's
    direction and the rule its scale (as weight normalization does with a
    gain the rule, not the gradient, sets).
    """

    def __init__(self, *args, scale_invariant=False, norm_relaxation=0.0, **kwargs):
        names = tuple(DEFAULTS) + LEGACY
        settings = {k: kwargs.pop(k) for k in names if k in kwargs}
        super().__init__(*args, **kwargs)
        for name, value in validate_settings(**settings).items():
            setattr(self, name, value)
        self.scale_invariant = _scale_invariant(scale_invariant, settings)
        self.norm_relaxation = _norm_relaxation(norm_relaxation, scale_invariant)

    @property
    def homeostasis_settings(self):
        return {name: getattr(self, name) for name in DEFAULTS}

    def build(self, input_shape):
        super().build(input_shape)
        if getattr(self, "lora_enabled", False):
            # LoRA locks the layer's tracking: no state could be added.
            raise ValueError(
                "Homeostatic layers do not support LoRA. Received: "
                f"lora_rank={self.lora_rank!r}"
            )
        units = int(self.kernel.shape[-1])
        self.homeostasis = UnitState(units, name="homeostasis")
        if self.scale_invariant:
            self._own_kernel_scale()
        settings = self.homeostasis_settings
        step = engine.HomeostasisEngine([(self.homeostasis, settings, self.bias)])
        engine.attach_constraints([(self, self.homeostasis, settings)], step)

    def call(self, inputs, training=None):
        forward = functools.partial(super().call, inputs)
        if self.scale_invariant:
            forward = functools.partial(self._with_unit_norm_kernel, forward)
        if not (training and self.trainable):
            return forward()
        axis = layer_selection.unit_axis(self)
        return sensor.sensed_call(self, forward, self.homeostasis, axis)

    def get_config(self):
        return {
            **super().get_config(),
            **self.homeostasis_settings,
            "scale_invariant": self.scale_invariant,
            "norm_relaxation": self.norm_relaxation,
        }

    def effective_kernel(self):
        """The kernel the layer computes with, as a tensor: its kernel, or
        with `scale_invariant=True` each unit's direction times its gain.
        Assign it to a plain layer's kernel to fold the layer."""
        if not self.scale_invariant:
            return self.kernel.value
        v = ops.cast(self._kernel, "float32")
        gain = ops.exp(self.homeostasis.row("log_gain"))
        return v * (gain / ops.sqrt(_squared_norms(v) + NORM_EPSILON))

    def _own_kernel_scale(self):
        # The gains start at the initial norms, so the layer first computes
        # exactly what the plain layer would.
        mode = getattr(self, "quantization_mode", None)
        if mode:
            raise ValueError(
                "`scale_invariant=True` needs a float kernel. Received: "
                f"quantization_mode={mode!r}"
            )
        self.homeostasis.scales_kernel = False
        self.homeostasis.norm_relaxation = self.norm_relaxation
        norms = np.sqrt(_squared_norms(np.asarray(self._kernel.numpy())))
        traces = np.array(self.homeostasis.traces.numpy())
        traces[unit_state.ROWS.index("log_gain")] = np.log(norms + NORM_EPSILON)
        self.homeostasis.traces.assign(traces)

    def _with_unit_norm_kernel(self, forward):
        """Runs `forward()` with the kernel each unit sees: its direction
        times its gain. The variable is put back afterwards."""
        variable = self._kernel
        kernel = ops.cast(self.effective_kernel(), self.compute_dtype)
        object.__setattr__(self, "_kernel", kernel)
        try:
            return forward()
        finally:
            object.__setattr__(self, "_kernel", variable)


def _squared_norms(kernel):
    """Each unit's (last axis) squared incoming-weight norm."""
    axes = tuple(range(len(kernel.shape) - 1))
    if isinstance(kernel, np.ndarray):
        return np.sum(np.square(kernel), axis=axes)
    return ops.sum(ops.square(kernel), axis=axes)


def _scale_invariant(value, settings):
    if not isinstance(value, bool):
        raise ValueError(
            "Received an invalid value for `scale_invariant`, expected True or "
            f"False. Received: scale_invariant={value!r}"
        )
    bounded = [k for k in ("min_gain", "max_gain") if settings.get(k) is not None]
    if value and bounded:
        raise ValueError(
            "`scale_invariant=True` leaves each unit's kernel norm to the rule "
            f"without bounds; do not pass {bounded}. Received: "
            + ", ".join(f"{k}={settings[k]!r}" for k in bounded)
        )
    return value


def _norm_relaxation(value, scale_invariant):
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and 0.0 <= value <= 1.0):
        raise ValueError(
            "Received an invalid value for `norm_relaxation`, expected a number "
            f"in [0, 1]. Received: norm_relaxation={value!r}"
        )
    if value and not scale_invariant:
        raise ValueError(
            "`norm_relaxation` acts on scale-invariant layers only; pass "
            f"`scale_invariant=True`. Received: norm_relaxation={value!r}"
        )
    return float(value)
