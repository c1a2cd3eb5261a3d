"""`HomeostaticDense`: a Dense layer with built-in synaptic scaling."""

import keras

from keras_homeostasis.layers.homeostatic_mixin import HomeostaticMixin


@keras.saving.register_keras_serializable(package="keras_homeostasis")
class HomeostaticDense(HomeostaticMixin, keras.layers.Dense):
    """Drop-in `keras.layers.Dense` whose units keep their activity near a set point.

    After each optimizer step, unit i's incoming weights are multiplied by
    `s_i` that moves the spread of its pre-activation toward
    the layer's, and the layer's toward `target_std`, and its bias moves so
    that it fires as often as the layer's other units (see
    `keras_homeostasis.rule`). Statistics are counted only when the layer is
    called with `training=True` and is trainable; `predict` and `evaluate`
    never change them; a layer that `fit` calls with `training=None` (a
    subclassed model whose `call` does not forward `training`) warns.
    Works for any `steps_per_execution`.

    Args:
        *args, **kwargs: every `keras.layers.Dense` argument, plus the
            homeostatic settings `target_std`, `target_rate`, `anchor`, `rate`,
            `bias_rate`, `momentum`, `max_step`, `min_gain`, `max_gain`,
            `period`, `warmup`, `silence_evidence` and `max_offset`,
            documented in `SynapticScalingCallback`.
        scale_invariant: if True, each unit computes with its incoming
            weights divided by their norm, times a gain the rule sets
            (`homeostasis.log_gain`, starting at the initial norm): the loss
            cannot see the kernel's scale, so the optimizer sets each
            unit's direction and the rule its scale. Trains at batch size 1
            with steps that kill a plain network's units (README, "Larger
            steps at batch size 1"). Not with `min_gain` or `max_gain`.
            Default False.
        norm_relaxation: scale-invariant layers only: the fraction by which
            each unit's `log |kernel|` moves toward its `log_gain` at each
            optimizer step. The optimizer lengthens the kernel, which
            shrinks every later step; `1e-4` undoes that over about 10,000
            steps, for long continual learning. Default 0.
        center_inputs: if True, the layer subtracts a trace of its input
            mean (per feature, momentum 0.99, summed over replicas) before
            its kernel, so a unit's offset is its bias alone, which the rule
            sets: every unit as evenly used as under BatchNormalization in
            ordinary training (README, "Centered inputs"). Each training
            pass moves the bias by the kernel times the mean's change, so
            the layer computes what it computed before. With
            `scale_invariant=True` too it trains at batch size 1 with
            momentum SGD at steps where every other method loses its
            units; without it, it diverges there. A plain Dense layer with
            `effective_bias()` computes the same. Default False.

    Example:

    ```python
    layer = HomeostaticDense(256, activation="relu", target_rate=0.3)
    ```
    """
