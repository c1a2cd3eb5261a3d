"""`WeightNormalization`: the weight-normalization baseline as a Keras wrapper."""

import keras
from keras import ops

# Added to squared norms so that an all-zero filter gives a zero kernel, not NaN.
NORM_EPSILON = 1e-12


@keras.saving.register_keras_serializable(package="keras_homeostasis")
class WeightNormalization(keras.layers.Wrapper):
    """Weight normalization of a Dense or Conv layer (Salimans & Kingma, 2016).

    Reparameterises the wrapped layer's kernel per output unit `i` as

        W_i = g_i * v_i / ||v_i||

    where `v_i` (the wrapped layer's own kernel, trainable) sets the
    direction of unit i's incoming weights and the trainable scalar `g_i`
    their norm. The gradient flows through the normalisation, so learning
    the direction never changes the norm.

    Implementation: the wrapped layer keeps its kernel, which serves as `v`;
    the wrapper adds `g` (shape `(units,)`), computes the normalised kernel
    with `keras.ops` in `call` and applies the wrapped layer's own operation
    (`ops.matmul` for Dense, the layer's `convolution_op` for convolutions),
    then its bias and activation. The initialisation is data-independent:
    `g` starts at the initial norms of `v`, so the wrapped layer computes at
    first exactly what it would compute unwrapped. (The data-dependent
    initialisation of the paper is not implemented.)

    Supported layers: `Dense`, `Conv1D`, `Conv2D`, `Conv3D` (not quantized,
    not LoRA-enabled). Saved `.keras` files load with no `custom_objects`
    once `keras_homeostasis` is imported.

    Args:
        layer: the `keras.layers.Dense` or `keras.layers.Conv*D` to wrap.
        **kwargs: base `keras.layers.Layer` arguments (e.g. `name`).

    Call arguments:
        inputs: the input tensor of the wrapped layer.

    Example:

    ```python
    layer = WeightNormalization(keras.layers.Dense(256, activation="relu"))
    ```

    Reference:
        Salimans & Kingma, "Weight Normalization: A Simple Reparameterization
        to Accelerate Training of Deep Neural Networks", NeurIPS 2016.
    """

    SUPPORTED = (
        keras.layers.Dense,
        keras.layers.Conv1D,
        keras.layers.Conv2D,
        keras.layers.Conv3D,
    )

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, self.SUPPORTED):
            raise TypeError(
                "Expected `layer` to be a keras.layers.Dense, Conv1D, Conv2D or "
                f"Conv3D layer. Received: layer={layer!r} of type "
                f"{type(layer).__name__}"
            )
        super().__init__(layer, **kwargs)

    def build(self, input_shape):
        super().build(input_shape)
        kernel = self.layer.kernel
        units = int(kernel.shape[-1])
        self.g = self.add_weight(
            shape=(units,),
            initializer="ones",
            trainable=True,
            name="g",
        )
        # Data-independent init: W = v at the start.
        self.g.assign(ops.cast(unit_norms(kernel), self.g.dtype))

    def normalized_kernel(self):
        """The kernel the layer uses, `g * v / ||v||` per output unit."""
        v = ops.convert_to_tensor(self.layer.kernel)
        g = ops.cast(self.g, v.dtype)
        return v * (g / unit_norms(v))

    def call(self, inputs):
        layer = self.layer
        kernel = self.normalized_kernel()
        if isinstance(layer, keras.layers.Dense):
            outputs = ops.matmul(inputs, kernel)
            bias_shape = (layer.units,)
        else:
            outputs = layer.convolution_op(inputs, kernel)
            bias_shape = self._conv_bias_shape(layer)
        if layer.use_bias:
            outputs = ops.add(outputs, ops.reshape(layer.bias, bias_shape))
        if layer.activation is not None:
            outputs = layer.activation(outputs)
        return outputs

    def _conv_bias_shape(self, layer):
        if layer.data_format == "channels_first":
            return (1, layer.filters) + (1,) * layer.rank
        return (1,) * (layer.rank + 1) + (layer.filters,)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


def unit_norms(kernel):
    """Each output unit's (last axis) incoming-weight norm, the divisor of
    weight normalization and of the scale-invariant homeostatic layers."""
    axes = tuple(range(len(kernel.shape) - 1))
    return ops.sqrt(ops.sum(ops.square(kernel), axis=axes) + NORM_EPSILON)
