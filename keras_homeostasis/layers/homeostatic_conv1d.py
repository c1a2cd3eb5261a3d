"""`HomeostaticConv1D`: a Conv1D layer with built-in synaptic scaling."""

import keras

from keras_homeostasis.layers.homeostatic_mixin import HomeostaticMixin


@keras.saving.register_keras_serializable(package="keras_homeostasis")
class HomeostaticConv1D(HomeostaticMixin, keras.layers.Conv1D):
    """Drop-in `keras.layers.Conv1D` whose units keep their activity near a set point.

    After each optimizer step, unit i's filter and bias are multiplied by
    `s_i`, with `log s_i = clip(rate * (log rho_i - log a_i), -max_step,
    max_step)`, where `a_i` is the trace of the unit's mean |output| (pooled over
    batch and steps)
    and `rho_i` is `target` or the layer's mean activity (see
    `keras_homeostasis.rule`). Statistics are counted only when the layer is
    called with `training=True` and is trainable; `predict` and `evaluate`
    never change them. Works for any `steps_per_execution`.

    Args:
        *args, **kwargs: every `keras.layers.Conv1D` argument, plus the
            homeostatic settings `target`, `rate`, `momentum`, `max_step`,
            `min_gain`, `max_gain`, `period`, `warmup`, `scale_bias`,
            `revive` and `silent_rate`, documented in
            `SynapticScalingCallback`.

    Example:

    ```python
    layer = HomeostaticConv1D(32, 3, activation="relu", target=0.5)
    ```
    """
