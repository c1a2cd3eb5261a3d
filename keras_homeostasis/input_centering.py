"""`InputCentering`: the callback's `center_inputs=True` for a plain layer.

A centered homeostatic layer computes `z = (x - x_bar) . w + b`: its units'
offsets are their biases, and the optimizer's kernel steps cannot move
them. A plain layer `z = x . w + b` computes the same with the bias
`b - x_bar . w`, so the callback gives it the same property between steps:

    b <- b - x_bar . (w_new - w_old)

after every kernel change (the optimizer's and the rule's), with `x_bar` a
trace of the layer's input mean (`InputMean`). The forward pass, and so the
trained model, stays the plain layer's. The rule senses the centered drive
`(x - x_bar) . w` and the centered bias `b + x_bar . w`, as it does for a
centered layer. With the callback's `center_gradients=True` (the
default) a Dense layer's kernel also gets the centered layer's gradient:
`center_gradient` passes the pre-activation through unchanged and takes
`x_bar (x) dL/db` off the kernel's gradient, so the optimizer (Adam's
per-weight steps included) sees the gradient of `(x - x_bar) . w`. A
convolution's gradient stays the plain one: its channel means over all
positions are far from its inputs' means at each position (an image's
background), and centering on them cost the small CNN 1.2 points under
Adam; centering on each position's mean, 0.3 (docs/design.md).
"""

import keras
from keras import ops

from keras_homeostasis import layer_selection
from keras_homeostasis.input_mean import InputMean
from keras_homeostasis.input_mean import kernel_times
from keras_homeostasis.unit_state import float_state
from keras_homeostasis.validation import positive_int


@keras.saving.register_keras_serializable(package="keras_homeostasis")
class InputCentering(keras.layers.Layer):
    """The input-mean trace of one plain layer and its units' mean drive.

    A container of `UnitState`, never called on tensors. Variables: the
    `input_mean` (`InputMean`) and `drive`, each unit's `x_bar . w` under the
    kernel of the training pass that last updated the mean (float32).

    Args:
        units: the layer's units (Dense units or filters).
        features: its input features (Dense) or channels (Conv).
        feature_axis: the inputs' axis holding them: -1, or 1 for a
            channels-first convolution.
        groups: a grouped convolution's groups (1 otherwise).
        kernel_rank: the kernel's rank (2: a Dense layer, whose gradient
            `center_gradient` can center; a convolution's channel means are
            not its inputs' means at each position).
    """

    def __init__(
        self, units, features, feature_axis=-1, groups=1, kernel_rank=2, **kwargs
    ):
        super().__init__(**kwargs)
        self.kernel_rank = positive_int("kernel_rank", kernel_rank)
        self.units = positive_int("units", units)
        self.groups = positive_int("groups", groups)
        self.input_mean = InputMean(features, feature_axis, name="input_mean")
        self.drive = float_state(self, "drive", (self.units,))
        # Whether the forward pass centers the kernel's gradient: set by the
        # callback (`center_gradients`), for Dense layers only.
        self.centers_gradient = False
        self.built = True

    def observe(self, inputs, kernel):
        """Adds a training pass's inputs to the mean and returns each unit's
        mean drive `x_bar . w` under `kernel`, the one the pass computes with
        (stored for `compensate`)."""
        self.input_mean.update(inputs)
        drive = kernel_times(kernel, self.input_mean.mean(), self.groups)
        self.drive.assign(drive)
        return drive

    def center_gradient(self, preactivation, kernel):
        """`preactivation` unchanged, with a gradient that makes the Dense
        kernel's that of the centered input: `x_bar (x) dL/db` is taken off
        it, as `(x - x_bar)` in the forward pass would. One outer product in
        the backward pass; nothing added to the forward pass."""
        mean = ops.stop_gradient(self.input_mean.mean())
        return _centered_kernel_gradient(
            preactivation, ops.convert_to_tensor(kernel), mean
        )

    def centered_bias(self, bias, drive=None):
        """The bias of the centered layer this plain layer computes as:
        `bias + x_bar . w`, `w` the last observed pass's kernel (float32);
        `drive`: that `x_bar . w` as `observe` returned it (default: read
        from the variable)."""
        drive = ops.convert_to_tensor(self.drive) if drive is None else drive
        return ops.cast(bias, "float32") + drive

    def compensate(self, bias, kernel):
        """`bias` moved by what the kernel's change since the last observed
        pass does to each unit's drive at the mean: `x_bar . (w_old - w)`."""
        after = kernel_times(kernel, self.input_mean.mean(), self.groups)
        change = ops.convert_to_tensor(self.drive) - after
        return bias + ops.cast(change, bias.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "features": self.input_mean.features,
            "feature_axis": self.input_mean.feature_axis,
            "groups": self.groups,
            "kernel_rank": self.kernel_rank,
        }


@ops.custom_gradient
def _centered_kernel_gradient(preactivation, kernel, mean):
    """Identity on `preactivation`; sends `-mean (x) dL/db` to `kernel`
    (`dL/db`: the upstream gradient summed over all but the unit axis, -1)."""

    def gradient(*args, upstream=None):
        upstream = args[0] if upstream is None else upstream
        per_unit = ops.cast(upstream, "float32")
        per_unit = ops.sum(ops.reshape(per_unit, (-1, per_unit.shape[-1])), axis=0)
        # The mean negated, not the product: one vector, not a kernel-sized
        # pass (the same values, bit for bit).
        kernel_gradient = ops.outer(-mean, per_unit)
        return upstream, ops.cast(kernel_gradient, kernel.dtype), ops.zeros_like(mean)

    return preactivation, gradient


# The layers whose kernel is `(positions..., input features, units)`.
CENTERED_TYPES = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
)


def refusal(layer):
    """Why `center_inputs=True` cannot center `layer` (a sentence naming it),
    or None: it needs a plain Dense or Conv layer with a bias to hold its
    units' offsets with."""
    if not isinstance(layer, CENTERED_TYPES):
        names = [cls.__name__ for cls in CENTERED_TYPES]
        return (
            f"`center_inputs=True` centers {names} layers only; layer "
            f"{layer.name!r} is a {type(layer).__name__}"
        )
    if getattr(layer, "bias", None) is None:
        return (
            "`center_inputs=True` holds each unit's offset with its bias, and "
            f"layer {layer.name!r} has none (use_bias=False)"
        )
    return None


def for_layer(layer):
    """A new `InputCentering` for a plain Dense or Conv layer with a bias:
    one `refusal` has no reason against (`layer_modes` checks first)."""
    groups = getattr(layer, "groups", 1) or 1
    kernel_shape = tuple(layer.kernel.shape)
    return InputCentering(
        units=int(kernel_shape[-1]),
        features=int(kernel_shape[-2]) * groups,
        # Inputs hold their channels on the axis the outputs hold units.
        feature_axis=layer_selection.unit_axis(layer),
        groups=groups,
        kernel_rank=len(kernel_shape),
        name="centering",
    )
