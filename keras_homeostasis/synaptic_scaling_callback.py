"""`SynapticScalingCallback`: homeostatic scaling for an unchanged Keras model."""

import functools
import inspect
import threading

import keras

from keras_homeostasis import distribute_compat
from keras_homeostasis import engine
from keras_homeostasis import layer_selection
from keras_homeostasis import sensor
from keras_homeostasis.settings import validate_settings
from keras_homeostasis.unit_state import UnitState

STATE_ATTRIBUTE = "homeostasis"

# The `training` flag of the model call in progress on this thread (None when
# unknown). Keras passes `training` to the model but never to Conv layers,
# whose call() has no such argument: their wrappers read it here.
_model_call = threading.local()


@keras.saving.register_keras_serializable(package="keras_homeostasis")
class SynapticScalingCallback(keras.callbacks.Callback):
    """Homeostatic synaptic scaling of a model's Dense and Conv layers.

    After every optimizer step, two homeostatic mechanisms act on each unit
    (see `keras_homeostasis.rule`): synaptic scaling multiplies its incoming
    weights (kernel column or convolution filter) by a factor `s_i` that
    moves the spread of its pre-activation toward `target_std`,

        log s_i = clip(rate * (log target_std - log sigma_i), -max_step, max_step)

    and intrinsic plasticity moves its bias so that it fires on a fraction
    `target_rate` of its inputs (mean pre-activation 0 for 0.5). By default
    every unit is held at mean 0 and standard deviation 1, where
    BatchNormalization puts it, through its own weights: the trained model
    is a plain model.

    The work runs inside the compiled train function (through the kernel and
    bias constraints, which Keras applies once per optimizer step), so it
    costs no per-batch Python work, works for any `steps_per_execution`, under
    `jit_compile=True`, and under `tf.distribute` strategies, where the
    statistics of all layers are summed across replicas in one all-reduce.
    Keras 3.15 itself cannot run `steps_per_execution > 1` under a strategy
    with several replicas (keras-team/keras#19246); the callback raises a
    `ValueError` saying so at `on_train_begin`. Under
    `MultiWorkerMirroredStrategy`, call
    `keras_homeostasis.distribute_compat.enable_multi_worker_fit()` first.

    Only training passes count: while `fit` runs, the layers' calls are
    wrapped, and calls with `training=False` or without `training` (those of
    `predict`, `evaluate` and of other callbacks) leave the statistics alone.
    The hooks are removed at `on_train_end`; after a `fit` that raised, the
    next `fit` with a `SynapticScalingCallback` replaces them.

    The state (traces, gains, counters) lives in `UnitState` variables attached
    to each layer as `layer.homeostasis`: `save_weights`, `ModelCheckpoint`,
    `BackupAndRestore` and `.keras` files include it. The state is created in
    `set_model`, before any `on_train_begin`, so the order relative to
    `BackupAndRestore` does not matter. To resume from a file with a fresh
    model, call `callback.set_model(model)` before `model.load_weights(path)`.

    Args:
        layers: optional list of layer names and/or layer classes to scale.
            By default, every trainable `Dense`, `Conv1D`, `Conv2D` and
            `Conv3D` layer except the model's output layers. A class selects
            the hidden layers of that class; an output layer is scaled only
            when named.
        target_std: set point of each unit's pre-activation standard
            deviation (> 0), or None for the layer's mean spread.
        target_rate: set point of each unit's firing rate (fraction of
            positive pre-activations), in (0, 1), or None for the layer's
            mean offset.
        rate: fraction of the log spread error corrected per step, in (0, 1].
        bias_rate: fraction of the mean pre-activation error corrected by
            the bias per step, in [0, 1] (0 disables intrinsic plasticity).
        momentum: momentum of the traces, in [0, 1). The traces are
            bias-corrected, so they hold a measurement from the first step.
        max_step: bound on |log s_i| per step, in (0, 1].
        min_gain: optional lower bound on a unit's cumulative factor, in
            (0, 1]; None (default) leaves it unbounded.
        max_gain: optional upper bound on a unit's cumulative factor, >= 1;
            None (default) leaves it unbounded.
        period: act every `period` optimizer steps (the traces are updated
            every step).
        warmup: optimizer steps to observe before the first action.
        log_dir: optional directory for TensorBoard's Homeostasis dashboard:
            when given, a `keras_homeostasis.tensorboard.HomeostasisLogger`
            writes each scaled unit's activity and factor there.
        log_freq: log every `log_freq` optimizer steps and at epoch ends, or
            `"epoch"` for epoch ends only.

    Example:

    ```python
    model.fit(x, y, epochs=5, callbacks=[SynapticScalingCallback()])
    ```
    """

    def __init__(self, layers=None, log_dir=None, log_freq=100, **settings):
        super().__init__()
        self.settings = validate_settings(**settings)
        self.layers = layer_selection.validate_selection(layers)
        self._logger = _make_logger(log_dir, log_freq, self.settings)
        self.log_dir = None if self._logger is None else self._logger.log_dir
        self.log_freq = log_freq
        self._bindings = []
        self._saved_constraints = []
        self._saved_calls = []

    @property
    def bindings(self):
        """`(layer, UnitState)` pairs of the scaled layers, in optimizer order."""
        return [(layer, state) for layer, state, _ in self._bindings]

    def set_model(self, model):
        super().set_model(model)
        if model.built:
            self._bind(model)
        self._forward("set_model", model)

    def _bind(self, model):
        chosen = layer_selection.select_layers(model, self.layers)
        order = {id(v): i for i, v in enumerate(model.trainable_variables)}
        chosen.sort(key=lambda layer: order.get(id(layer.kernel), len(order)))
        self._bindings = []
        with model.distribute_strategy.scope():
            for layer in chosen:
                self._bindings.append((layer, self._state_of(layer), self.settings))

    def _state_of(self, layer):
        state = getattr(layer, STATE_ATTRIBUTE, None)
        if isinstance(state, UnitState):
            return state
        state = UnitState(int(layer.kernel.shape[-1]), name=f"{layer.name}_homeostasis")
        # Bypass Keras' tracking: the model's weights stay those of the plain
        # layer, while saving still walks this attribute and keeps the state.
        object.__setattr__(layer, STATE_ATTRIBUTE, state)
        return state

    def on_train_begin(self, logs=None):
        if not self.model.built:
            raise ValueError(
                "SynapticScalingCallback needs a built model: call the model on "
                "data or build it before `fit`."
            )
        distribute_compat.check_steps_per_execution(self.model)
        if not self._bindings:
            self._bind(self.model)
        self._install()
        self._set_collecting(1.0)
        self._forward("on_train_begin", logs)

    def on_train_batch_end(self, batch, logs=None):
        self._forward("on_train_batch_end", batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._forward("on_epoch_end", epoch, logs)

    def on_train_end(self, logs=None):
        self._uninstall()
        self._forward("on_train_end", logs)

    def _forward(self, hook, *args):
        if self._logger is not None:
            getattr(self._logger, hook)(*args)

    def on_test_begin(self, logs=None):
        self._set_collecting(0.0)

    def on_test_end(self, logs=None):
        self._set_collecting(1.0)

    def on_predict_begin(self, logs=None):
        self._set_collecting(0.0)

    def on_predict_end(self, logs=None):
        self._set_collecting(1.0)

    def _set_collecting(self, value):
        for _, state, _ in self._bindings:
            state.collecting.assign(value)

    def _install(self):
        self._uninstall()
        self._wrap_model_call(self.model)
        for layer, state, _ in self._bindings:
            self._wrap_call(layer, state)
        self._saved_constraints = engine.attach_constraints(
            self._bindings,
            engine.HomeostasisEngine(
                [
                    (state, settings, getattr(layer, "bias", None))
                    for layer, state, settings in self._bindings
                ]
            ),
        )
        # Retrace so the compiled step contains the new statistics and constraints.
        self.model.make_train_function(force=True)

    def _wrap_model_call(self, model):
        original = _unwrapped_call(model)
        if "training" not in inspect.signature(original).parameters:
            return  # Keras gives this model no flag to relay.

        def call(*args, **kwargs):
            outer = getattr(_model_call, "training", None)
            # As in Keras, a call without `training` is an inference call.
            _model_call.training = bool(kwargs.get("training"))
            try:
                return original(*args, **kwargs)
            finally:
                _model_call.training = outer

        self._set_call(model, call, original)

    def _wrap_call(self, layer, state):
        original = _unwrapped_call(layer)
        unit_axis = layer_selection.unit_axis(layer)
        # Keras passes `training` only to layers whose call() takes it
        # (Dense): there a missing flag means inference, as for
        # BatchNormalization. Conv layers get the model call's flag; when
        # it is unknown they count, and `collecting` guards evaluate/predict.
        takes_training = "training" in inspect.signature(original).parameters

        def call(*args, **kwargs):
            if takes_training:
                training = kwargs.get("training")
            else:
                training = getattr(_model_call, "training", None) is not False
            symbolic = any(keras.backend.is_keras_tensor(a) for a in args)
            if not training or symbolic:
                return original(*args, **kwargs)
            forward = functools.partial(original, *args, **kwargs)
            return sensor.sensed_call(layer, forward, state, unit_axis)

        self._set_call(layer, call, original)

    def _set_call(self, layer, call, original):
        call.homeostasis_original = original
        object.__setattr__(layer, "call", call)
        self._saved_calls.append((layer, call))

    def _uninstall(self):
        for layer, call in self._saved_calls:
            # Another callback on the same model (e.g. one per layer) may have
            # replaced this model-call relay with its own: leave that one.
            if vars(layer).get("call") is call:
                object.__delattr__(layer, "call")
        for variable, constraint in self._saved_constraints:
            variable.constraint = constraint
        if self._saved_calls and self.model is not None:
            # Functions traced with the hooks would keep counting: retrace.
            self.model.train_function = None
            self.model.test_function = None
            self.model.predict_function = None
        self._saved_calls = []
        self._saved_constraints = []

    def __deepcopy__(self, memo):
        return type(self)(**self.get_config())

    def get_config(self):
        return {
            "layers": self.layers,
            "log_dir": self.log_dir,
            "log_freq": self.log_freq,
            **self.settings,
        }


def _make_logger(log_dir, log_freq, settings):
    # Imported here to keep the logging code out of the core import path.
    from keras_homeostasis.tensorboard import homeostasis_logger

    log_freq = homeostasis_logger.validate_update_freq(log_freq, "log_freq")
    if log_dir is None:
        return None
    return homeostasis_logger.HomeostasisLogger(
        log_dir, update_freq=log_freq, settings=settings
    )


def _unwrapped_call(layer):
    """`layer.call` without a wrapper left by a fit that raised (no on_train_end)."""
    if hasattr(vars(layer).get("call"), "homeostasis_original"):
        object.__delattr__(layer, "call")
    return layer.call
