"""`InputMean`: the trace of a layer's input mean that `center_inputs=True`
subtracts."""

import keras
from keras import ops

from keras_homeostasis import engine
from keras_homeostasis import rule
from keras_homeostasis.unit_state import float_state
from keras_homeostasis.validation import positive_int


@keras.saving.register_keras_serializable(package="keras_homeostasis")
class InputMean(keras.layers.Layer):
    """A bias-corrected trace of a layer's input mean, per input feature.

    Like `UnitState`, a container that Keras saving walks, never called on
    tensors. Its two float32 variables are `trace` (started at zero, with
    momentum `rule.INPUT_MOMENTUM`) and `steps` (the training passes it
    counted). A training pass adds its inputs summed over all replicas, so
    every replica centers on the same mean.

    Args:
        features: the number of input features (Dense) or channels (Conv).
        feature_axis: the axis of the inputs holding them: -1, or 1 for a
            channels-first convolution.
    """

    def __init__(self, features, feature_axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.features = positive_int("features", features)
        self.feature_axis = feature_axis
        self.trace = float_state(self, "trace", (features,))
        self.steps = float_state(self, "steps", ())
        self.built = True

    def update(self, inputs):
        """Adds one training pass's inputs (a non-finite pass is dropped) and
        returns how far that moved the mean (float32, one per feature)."""
        sums = ops.stop_gradient(rule.input_sums(inputs, self.feature_axis))
        before = self.mean()
        trace, steps = rule.step_input_mean(
            self.trace, self.steps, engine.all_reduce_sum(sums)
        )
        self.trace.assign(trace)
        self.steps.assign(steps)
        return rule.input_mean(trace, steps) - before

    def mean(self):
        """The bias-corrected mean, as a float32 tensor (zeros at first)."""
        return rule.input_mean(self.trace, self.steps)

    def center(self, inputs):
        """`inputs` minus the mean, along `feature_axis`."""
        shape = [1] * len(inputs.shape)
        shape[self.feature_axis] = -1
        return inputs - ops.cast(ops.reshape(self.mean(), shape), inputs.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "features": self.features,
            "feature_axis": self.feature_axis,
        }
