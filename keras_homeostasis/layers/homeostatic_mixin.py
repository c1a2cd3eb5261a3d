"""Shared behaviour of the homeostatic drop-in layers."""

import functools
import warnings

from keras import ops

from keras_homeostasis import engine
from keras_homeostasis import layer_selection
from keras_homeostasis import sensor
from keras_homeostasis import traced_passes
from keras_homeostasis.input_mean import InputMean
from keras_homeostasis.input_mean import kernel_times
from keras_homeostasis.settings import DEFAULTS
from keras_homeostasis.settings import LEGACY
from keras_homeostasis.settings import refuse_gain_bounds
from keras_homeostasis.settings import validate_norm_relaxation
from keras_homeostasis.settings import validate_settings
from keras_homeostasis.unit_state import UnitState
from keras_homeostasis.unit_state import initial_log_norms
from keras_homeostasis.unit_state import outside_any_trace
from keras_homeostasis.validation import validate_flag
from keras_homeostasis.weight_normalization import unit_norms


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

    def __init__(
        self,
        *args,
        scale_invariant=False,
        norm_relaxation=0.0,
        center_inputs=False,
        **kwargs,
    ):
        names = tuple(DEFAULTS) + LEGACY
        settings = {k: kwargs.pop(k) for k in names if k in kwargs}
        super().__init__(*args, **kwargs)
        for name, value in validate_settings(**settings).items():
            setattr(self, name, value)
        self.scale_invariant = _scale_invariant(scale_invariant, settings)
        self.norm_relaxation = validate_norm_relaxation(
            norm_relaxation, "scale_invariant", scale_invariant
        )
        self.center_inputs = validate_flag("center_inputs", center_inputs)
        self._built_calls = {"sensed": False, "unsensed": False}
        self._warned_unsensed = False

    @property
    def homeostasis_settings(self):
        return {name: getattr(self, name) for name in DEFAULTS}

    def build(self, input_shape):
        with outside_any_trace():
            self._build_with_state(input_shape)

    def _build_with_state(self, input_shape):
        super().build(input_shape)
        if getattr(self, "lora_enabled", False):
            # LoRA locks the layer's tracking: no state could be added.
            raise ValueError(
                "Homeostatic layers do not support LoRA. Received: "
                f"lora_rank={self.lora_rank!r}"
            )
        units = int(self.kernel.shape[-1])
        log_gain = self._initial_log_gain() if self.scale_invariant else None
        self.homeostasis = UnitState(units, log_gain=log_gain, name="homeostasis")
        if self.scale_invariant:
            self.homeostasis.scales_kernel = False
            self.homeostasis.norm_relaxation = self.norm_relaxation
        if self.center_inputs:
            self._build_input_mean(input_shape)
        settings = self.homeostasis_settings
        step = engine.HomeostasisEngine(
            [(self.homeostasis, settings, self.bias)],
            on_build=self._warn_if_never_sensed,
        )
        engine.attach_constraints([(self, self.homeostasis, settings)], step)

    def call(self, inputs, training=None):
        sensed = bool(training and self.trainable)
        # The kernel the units see, computed once per call where needed.
        moves_mean = self.center_inputs and sensed
        needed = self.scale_invariant or moves_mean
        kernel = self.effective_kernel() if needed else None
        if self.center_inputs:
            if moves_mean:
                self._move_input_mean(inputs, kernel)
            inputs = self.input_mean.center(inputs)
        forward = functools.partial(super().call, inputs)
        if self.scale_invariant:
            forward = functools.partial(self._with_unit_norm_kernel, forward, kernel)
        if sensed or (training is None and self.trainable):
            # Python, so once per trace: read when the optimizer's update,
            # built after this forward pass, reaches the rule's step.
            self._built_calls["sensed" if sensed else "unsensed"] = True
        if not sensed:
            return forward()
        axis = layer_selection.unit_axis(self)
        target = traced_passes.Recording(self.homeostasis)
        return sensor.sensed_call(self, forward, target, axis)

    def _warn_if_never_sensed(self):
        """Warns once when a train step is built whose forward passes called
        this layer only with `training=None`: it sensed nothing there, so
        the rule would leave it unscaled, silently."""
        calls = self._built_calls
        self._built_calls = {"sensed": False, "unsensed": False}
        if calls["sensed"] or not calls["unsensed"] or self._warned_unsensed:
            return
        self._warned_unsensed = True
        warnings.warn(
            f"{type(self).__name__} {self.name!r} was called with "
            "training=None in a train step, so it senses nothing and the rule "
            "leaves it unscaled. Keras calls a model whose `call` takes no "
            "`training` argument without one (Dropout stays off too): define "
            "`call(self, inputs, training=None)` and pass `training=training` "
            "to the layers it calls.",
            stacklevel=1,
        )

    def get_config(self):
        return {
            **super().get_config(),
            **self.homeostasis_settings,
            "scale_invariant": self.scale_invariant,
            "norm_relaxation": self.norm_relaxation,
            "center_inputs": self.center_inputs,
        }

    def effective_kernel(self):
        """The kernel the layer computes with, as a tensor: its kernel, or
        with `scale_invariant=True` each unit's direction times its gain.
        Assign it to a plain layer's kernel to fold the layer."""
        if not self.scale_invariant:
            return self.kernel.value
        v = ops.cast(self._kernel, "float32")
        gain = ops.exp(self.homeostasis.row("log_gain"))
        return v * (gain / unit_norms(v))

    def effective_bias(self):
        """The bias a plain layer needs to compute what this layer computes
        (`effective_kernel()` the kernel): its bias, or with
        `center_inputs=True` `bias - input_mean . kernel` (a convolution
        only with `padding="valid"`)."""
        units = int(self.kernel.shape[-1])
        bias = ops.zeros((units,)) if self.bias is None else self.bias
        bias = ops.cast(bias, "float32")
        if not self.center_inputs:
            return bias
        padding = getattr(self, "padding", "valid")
        if padding != "valid":
            raise ValueError(
                "A centered convolution with padding has no plain equivalent: "
                "its padding is zero after centering, the input mean before "
                f"it. Received: padding={padding!r} on {type(self).__name__} "
                f"{self.name!r} (center_inputs=True)"
            )
        mean = self.input_mean.mean()
        return bias - kernel_times(self.effective_kernel(), mean, self._groups())

    def _move_input_mean(self, inputs, kernel):
        """Adds a training pass to the input-mean trace and moves the bias by
        what the kernel makes of the mean's change, so the layer computes
        what it computed before: the mean's moves reach no unit's output.
        (Not at a padded convolution's border, whose zeros are centered.)
        Were they to, each move would jolt the next layer a hundred steps
        after the optimizer had answered the change that caused it, and at
        batch size 1 with momentum SGD that delayed loop diverged."""
        shift = self.input_mean.update(inputs)
        if self.bias is not None:
            drive = kernel_times(kernel, shift, self._groups())
            self.bias.assign_add(ops.cast(drive, self.bias.dtype))

    def _groups(self):
        return getattr(self, "groups", 1) or 1

    def _build_input_mean(self, input_shape):
        # Per input feature (Dense) or channel (Conv).
        axis = 1 if _channels_first(self) else -1
        features = int(input_shape[axis])
        self.input_mean = InputMean(features, axis, name="input_mean")

    def _initial_log_gain(self):
        """The log of each unit's initial kernel norm: the gains start there,
        so the layer first computes exactly what the plain layer would."""
        mode = getattr(self, "quantization_mode", None)
        if mode:
            raise ValueError(
                "`scale_invariant=True` needs a float kernel. Received: "
                f"quantization_mode={mode!r}"
            )
        return initial_log_norms(self._kernel)

    def _with_unit_norm_kernel(self, forward, kernel):
        """Runs `forward()` with `kernel`, the one each unit sees: its
        direction times its gain. The variable is put back afterwards."""
        variable = self._kernel
        kernel = ops.cast(kernel, self.compute_dtype)
        object.__setattr__(self, "_kernel", kernel)
        try:
            return forward()
        finally:
            object.__setattr__(self, "_kernel", variable)


def _scale_invariant(value, settings):
    value = validate_flag("scale_invariant", value)
    if value:
        refuse_gain_bounds("scale_invariant", settings)
    return value


def _channels_first(layer):
    return getattr(layer, "data_format", None) == "channels_first"
