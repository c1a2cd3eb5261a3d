"""`HomeostaticConv2D`: a Conv2D layer with built-in synaptic scaling."""

import keras

from keras_homeostasis.layers.homeostatic_mixin import HomeostaticMixin


@keras.saving.register_keras_serializable(package="keras_homeostasis")
class HomeostaticConv2D(HomeostaticMixin, keras.layers.Conv2D):
    """Drop-in `keras.layers.Conv2D` whose units keep their activity near a set point.

    After each optimizer step, unit i's incoming weights are multiplied by
    `s_i` that moves the spread of its pre-activation (pooled over batch and
    space) toward the layer's, and the layer's toward `target_std`, and its
    bias moves so that it fires as often as the layer's other units (see
    `keras_homeostasis.rule`). Statistics are counted only when the layer is
    called with `training=True` and is trainable; `predict` and `evaluate`
    never change them; a layer that `fit` calls with `training=None` (a
    subclassed model whose `call` does not forward `training`) warns.
    Works for any `steps_per_execution`.

    Args:
        *args, **kwargs: every `keras.layers.Conv2D` argument, plus the
            homeostatic settings `target_std`, `target_rate`, `anchor`, `rate`,
            `bias_rate`, `momentum`, `max_step`, `min_gain`, `max_gain`,
            `period`, `warmup`, `silence_evidence` and `max_offset`,
            documented in `SynapticScalingCallback`.
        scale_invariant, norm_relaxation: as in `HomeostaticDense` (each
            filter's weights divided by their norm, times a gain the rule
            sets). Default False, 0.
        center_inputs: as in `HomeostaticDense`, with one mean per input
            channel (the padding is zero after centering, so the layer
            keeps its function as the mean moves except at the border, and
            folds into a plain convolution only with `padding="valid"`).
            Default False.

    Example:

    ```python
    layer = HomeostaticConv2D(32, 3, activation="relu", target_rate=0.3)
    ```
    """
