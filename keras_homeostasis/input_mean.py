"""`InputMean`: the trace of a layer's input mean that `center_inputs=True`
subtracts (the layers) or holds the units' offsets against (the callback)."""

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


def kernel_times(kernel, features, groups=1):
    """Each unit's kernel, summed over positions, dotted with `features`
    (one value per input feature or channel, `groups` of a grouped
    convolution in order): `features . kernel` for a Dense layer."""
    kernel = ops.cast(kernel, "float32")
    positions = tuple(range(len(kernel.shape) - 2))
    per_channel = ops.sum(kernel, axis=positions) if positions else kernel
    if groups == 1:
        # One small product: the einsum below cost about 0.8 ms a step on
        # the bench's MLP (784-256x3, batch 128) on CPU, this too little to
        # measure.
        return ops.matmul(features[None, :], per_channel)[0]
    inputs, units = per_channel.shape
    per_group = ops.reshape(per_channel, (inputs, groups, units // groups))
    features = ops.reshape(features, (groups, inputs))
    return ops.reshape(ops.einsum("gi,igu->gu", features, per_group), (units,))
