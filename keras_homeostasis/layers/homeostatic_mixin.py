"""Shared behaviour of the homeostatic drop-in layers."""

import functools

from keras_homeostasis import engine
from keras_homeostasis import layer_selection
from keras_homeostasis import sensor
from keras_homeostasis.settings import DEFAULTS
from keras_homeostasis.settings import LEGACY
from keras_homeostasis.settings import validate_settings
from keras_homeostasis.unit_state import UnitState


class HomeostaticMixin:
    """Adds synaptic scaling to a Dense or Conv layer class.

    Placed before the Keras class in the bases. The layer takes the
    homeostatic settings as keyword arguments (documented in
    `SynapticScalingCallback`), keeps one attribute per setting, carries its
    own `UnitState` (`self.homeostasis`) and installs the scaling constraints
    on its kernel and bias when built. Statistics are counted only in calls
    with `training=True` while the layer is trainable, so `predict` and
    `evaluate` never change them.
    """

    def __init__(self, *args, **kwargs):
        names = tuple(DEFAULTS) + LEGACY
        settings = {k: kwargs.pop(k) for k in names if k in kwargs}
        super().__init__(*args, **kwargs)
        for name, value in validate_settings(**settings).items():
            setattr(self, name, value)

    @property
    def homeostasis_settings(self):
        return {name: getattr(self, name) for name in DEFAULTS}

    def build(self, input_shape):
        super().build(input_shape)
        units = int(self.kernel.shape[-1])
        self.homeostasis = UnitState(units, name="homeostasis")
        settings = self.homeostasis_settings
        step = engine.HomeostasisEngine([(self.homeostasis, settings, self.bias)])
        engine.attach_constraints([(self, self.homeostasis, settings)], step)

    def call(self, inputs, training=None):
        forward = functools.partial(super().call, inputs)
        if not (training and self.trainable):
            return forward()
        axis = layer_selection.unit_axis(self)
        return sensor.sensed_call(self, forward, self.homeostasis, axis)

    def get_config(self):
        return {**super().get_config(), **self.homeostasis_settings}
