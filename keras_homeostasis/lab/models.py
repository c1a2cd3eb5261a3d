"""Small classifiers and optimizers for the command line and the comparisons.

Every hidden block is `linear -> [normalization] -> ReLU`. Each block's
post-ReLU output comes from a layer named `hidden_<k>` (k = 1, 2, ...), the
layer whose units the usage metrics measure:

- `none`, the `CALLBACK_METHODS`, `weightnorm`, `unitnorm` and the methods of
  `HOMEOSTATIC_LAYERS` (homeostatic layers, with `scale_invariant` and
  `center_inputs` as named there): the Dense/Conv layer itself (ReLU
  inside it, so its output is the post-ReLU activity that synaptic scaling
  senses) is `hidden_<k>`;
- `batchnorm`, `layernorm`, `groupnorm`: `hidden_<k>_linear` (no bias: the
  normalization's offset replaces it) -> `hidden_<k>_norm` -> the ReLU layer
  `hidden_<k>`.

The `CALLBACK_METHODS` build plain layers: the `SynapticScalingCallback` is
added at fit time (`scaling`; `centered_scaling` with `center_inputs=True`,
`centered_offsets_scaling` with `center_gradients=False` too;
`held_scaling` with `hold_norms=True`, `held_centered_scaling` with both
`hold_norms=True` and `center_inputs=True`). For
convolutions, `layernorm` normalizes each sample over all positions and
channels (`GroupNormalization(groups=1)`, Wu & He 2018), since Keras'
`LayerNormalization` over channels alone would be a per-pixel norm.
"""

import math
import re

import keras

from keras_homeostasis.layers import HomeostaticConv2D
from keras_homeostasis.layers import HomeostaticDense
from keras_homeostasis.validation import positive_int
from keras_homeostasis.weight_normalization import WeightNormalization

ARCHITECTURES = ("mlp", "cnn")
NORMALIZATIONS = (
    "none",
    "batchnorm",
    "layernorm",
    "groupnorm",
    "weightnorm",
    "unitnorm",
    "scaling",
    "centered_scaling",
    "centered_offsets_scaling",
    "held_scaling",
    "held_centered_scaling",
    "homeostatic_layers",
    "scale_invariant_layers",
    "centered_layers",
    "centered_scale_invariant_layers",
)
# The methods built of homeostatic layers, and the layer options of each.
HOMEOSTATIC_LAYERS = {
    "homeostatic_layers": {"scale_invariant": False},
    "scale_invariant_layers": {"scale_invariant": True},
    "centered_layers": {"scale_invariant": False, "center_inputs": True},
    "centered_scale_invariant_layers": {"scale_invariant": True, "center_inputs": True},
}
NORM_LAYERS = ("batchnorm", "layernorm", "groupnorm")
# The methods trained with the callback, and its options for each.
# Every option is spelled out, so a method names the same training whatever
# the callback's defaults are (its default is `held_centered_scaling`).
CALLBACK_METHODS = {
    "scaling": {"center_inputs": False, "hold_norms": False},
    "centered_scaling": {"center_inputs": True, "hold_norms": False},
    "centered_offsets_scaling": {
        "center_inputs": True,
        "center_gradients": False,
        "hold_norms": False,
    },
    "held_scaling": {"center_inputs": False, "hold_norms": True},
    "held_centered_scaling": {"center_inputs": True, "hold_norms": True},
}


def homeostatic_method(method, **options):
    """The method of `HOMEOSTATIC_LAYERS` whose layers take `method`'s
    options with `options` (`scale_invariant`, `center_inputs`) changed."""
    kind = {"scale_invariant": False, "center_inputs": False}
    wanted = {**kind, **HOMEOSTATIC_LAYERS[method], **options}
    for name, layer_options in HOMEOSTATIC_LAYERS.items():
        if {**kind, **layer_options} == wanted:
            return name
    raise ValueError(f"No homeostatic-layer method has the options {wanted}")


def callback_method(**options):
    """The method of `CALLBACK_METHODS` whose callback takes `options`
    (`center_inputs`, `hold_norms`) with the rest as `scaling` has them."""
    kind = {"center_gradients": True, **CALLBACK_METHODS["scaling"]}
    wanted = {**kind, **options}
    for name, method_options in CALLBACK_METHODS.items():
        if {**kind, **method_options} == wanted:
            return name
    raise ValueError(f"No callback method has the options {wanted}")


def callback_options(method, norm_relaxation=None):
    """The `SynapticScalingCallback` options of a callback method; those
    holding norms also take `norm_relaxation` (when not None)."""
    options = dict(CALLBACK_METHODS[method])
    if options.get("hold_norms") and norm_relaxation is not None:
        options["norm_relaxation"] = norm_relaxation
    return options


def layer_settings(method, settings, norm_relaxation=None):
    """`settings` as `method`'s homeostatic layers take them.

    Only the scale-invariant layers take `norm_relaxation`: they get
    `norm_relaxation` unless `settings` names its own, and the other layers
    lose it.
    """
    settings = dict(settings)
    if HOMEOSTATIC_LAYERS.get(method, {}).get("scale_invariant"):
        if norm_relaxation is not None:
            settings.setdefault("norm_relaxation", norm_relaxation)
    else:
        settings.pop("norm_relaxation", None)
    return settings


DEFAULT_HIDDEN = (256, 256)
CNN_FILTERS = (32, 64)
CNN_DENSE_UNITS = 128
# Wu & He use 32 groups for wide layers; 8 suits the small widths used here.
DEFAULT_GROUPS = 8
OPTIMIZER_DEFAULTS = {
    "sgd": {"learning_rate": 0.05, "momentum": 0.9},
    "adam": {"learning_rate": 1e-3},
    "adamw": {"learning_rate": 1e-3},
}
_HIDDEN_NAME = re.compile(r"hidden_\d+")


def build_model(
    architecture,
    normalization,
    input_shape,
    num_classes,
    hidden=None,
    groups=DEFAULT_GROUPS,
    scaling_settings=None,
    name=None,
):
    """Builds a classifier with softmax outputs.

    Args:
        architecture: `"mlp"` (Flatten, then one Dense block per entry of
            `hidden`) or `"cnn"` (Conv(32, 3)-MaxPool-Conv(64, 3)-MaxPool-
            Flatten-Dense(128), "same" padding).
        normalization: one of `none`, `batchnorm`, `layernorm`, `groupnorm`,
            `weightnorm`, `unitnorm` (Keras' `UnitNorm` constraint on each
            hidden kernel: every unit's incoming weights put back to norm 1
            after each step), `scaling`, `centered_scaling`,
            `centered_offsets_scaling`, `homeostatic_layers`,
            `scale_invariant_layers`, `centered_layers` (the homeostatic
            layers with `center_inputs=True`),
            `centered_scale_invariant_layers` (with both options).
        input_shape: shape of one sample, e.g. `(28, 28, 1)`.
        num_classes: number of output classes.
        hidden: hidden widths of the MLP (default `[256, 256]`); ignored by
            the CNN.
        groups: groups of `groupnorm` (reduced to a divisor of each width).
        scaling_settings: homeostatic settings passed to the layers of
            the `HOMEOSTATIC_LAYERS` methods (see `SynapticScalingCallback`;
            `layer_settings` fits them to a method).
        name: model name (default `<architecture>_<normalization>`).

    Returns:
        An uncompiled `keras.Model`.
    """
    _check_choice("architecture", architecture, ARCHITECTURES)
    _check_choice("normalization", normalization, NORMALIZATIONS)
    num_classes = positive_int("num_classes", num_classes)
    hidden = [
        positive_int("hidden", h)
        for h in (DEFAULT_HIDDEN if hidden is None else hidden)
    ]
    block = _Block(normalization, groups, scaling_settings or {})
    inputs = keras.Input(tuple(input_shape))
    if architecture == "mlp":
        x = keras.layers.Flatten(name="flatten")(inputs)
        for k, units in enumerate(hidden, start=1):
            x = block.dense(x, units, k)
    else:
        x = inputs
        for k, filters in enumerate(CNN_FILTERS, start=1):
            x = block.conv(x, filters, k)
            x = keras.layers.MaxPooling2D(2, padding="same", name=f"pool_{k}")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        x = block.dense(x, CNN_DENSE_UNITS, len(CNN_FILTERS) + 1)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="output")(x)
    return keras.Model(inputs, outputs, name=name or f"{architecture}_{normalization}")


def hidden_layer_names(model):
    """Names of the layers whose outputs are the hidden blocks' post-ReLU units."""
    return [layer.name for layer in model.layers if _HIDDEN_NAME.fullmatch(layer.name)]


def build_optimizer(name, learning_rate=None, **kwargs):
    """Builds `sgd` (momentum 0.9, lr 0.05), `adam` (lr 1e-3) or `adamw` (1e-3).

    Other keyword arguments go to the Keras optimizer (e.g. `momentum`,
    `nesterov`, `weight_decay`, `beta_1`, `clipnorm`).
    """
    _check_choice("name", name, tuple(OPTIMIZER_DEFAULTS))
    settings = {**OPTIMIZER_DEFAULTS[name], **kwargs}
    if learning_rate is not None:
        settings["learning_rate"] = learning_rate
    classes = {
        "sgd": keras.optimizers.SGD,
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
    }
    return classes[name](**settings)


class _Block:
    """Builds `linear -> norm -> ReLU` blocks for one normalization method."""

    def __init__(self, normalization, groups, scaling_settings):
        self.normalization = normalization
        self.groups = positive_int("groups", groups)
        self.scaling_settings = dict(scaling_settings)
        if normalization in HOMEOSTATIC_LAYERS:
            self.scaling_settings.update(HOMEOSTATIC_LAYERS[normalization])

    def dense(self, x, units, k):
        if self.normalization in HOMEOSTATIC_LAYERS:
            layer = HomeostaticDense(
                units, activation="relu", name=f"hidden_{k}", **self.scaling_settings
            )
            return layer(x)
        return self._block(x, keras.layers.Dense, (units,), units, k)

    def conv(self, x, filters, k):
        if self.normalization in HOMEOSTATIC_LAYERS:
            layer = HomeostaticConv2D(
                filters,
                3,
                padding="same",
                activation="relu",
                name=f"hidden_{k}",
                **self.scaling_settings,
            )
            return layer(x)
        return self._block(x, keras.layers.Conv2D, (filters, 3), filters, k, True)

    def _block(self, x, cls, args, units, k, spatial=False):
        extra = {"padding": "same"} if spatial else {}
        if self.normalization == "unitnorm":
            # Every axis but the units' (the last) holds a unit's weights.
            axes = [0, 1, 2] if spatial else 0
            extra["kernel_constraint"] = keras.constraints.UnitNorm(axis=axes)
        if self.normalization not in NORM_LAYERS:
            if self.normalization == "weightnorm":
                inner = cls(*args, activation="relu", name=f"hidden_{k}_v", **extra)
                return WeightNormalization(inner, name=f"hidden_{k}")(x)
            return cls(*args, activation="relu", name=f"hidden_{k}", **extra)(x)
        x = cls(*args, use_bias=False, name=f"hidden_{k}_linear", **extra)(x)
        x = self._norm(units, spatial, f"hidden_{k}_norm")(x)
        return keras.layers.Activation("relu", name=f"hidden_{k}")(x)

    def _norm(self, units, spatial, name):
        if self.normalization == "batchnorm":
            return keras.layers.BatchNormalization(name=name)
        if self.normalization == "layernorm":
            if spatial:
                return keras.layers.GroupNormalization(groups=1, name=name)
            return keras.layers.LayerNormalization(name=name)
        return keras.layers.GroupNormalization(
            groups=math.gcd(units, self.groups), name=name
        )


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected one of "
            f"{list(choices)}. Received: {name}={value!r}"
        )
