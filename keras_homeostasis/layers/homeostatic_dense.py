"""`HomeostaticDense`: a Dense layer with built-in synaptic scaling."""

import keras

from keras_homeostasis.layers.homeostatic_mixin import HomeostaticMixin


@keras.saving.register_keras_serializable(package="keras_homeostasis")
class HomeostaticDense(HomeostaticMixin, keras.layers.Dense):
    """Drop-in `keras.layers.Dense` whose units keep their activity near a set point.

    After each optimizer step, unit i's incoming weights are multiplied by
    `s_i`, with `log s_i = clip(rate * (log target_std - log sigma_i),
    -max_step, max_step)`, where `sigma_i` is the spread of its
    pre-activation, and its bias moves so that it
    fires on a fraction `target_rate` of its inputs (see
    `keras_homeostasis.rule`). Statistics are counted only when the layer is
    called with `training=True` and is trainable; `predict` and `evaluate`
    never change them. Works for any `steps_per_execution`.

    Args:
        *args, **kwargs: every `keras.layers.Dense` argument, plus the
            homeostatic settings `target_std`, `target_rate`, `rate`,
            `bias_rate`, `momentum`, `max_step`, `min_gain`, `max_gain`,
            `period` and `warmup`, documented in `SynapticScalingCallback`.

    Example:

    ```python
    layer = HomeostaticDense(256, activation="relu", target_rate=0.3)
    ```
    """
