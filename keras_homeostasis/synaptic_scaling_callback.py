"""`SynapticScalingCallback`: homeostatic scaling for an unchanged Keras model."""

import contextlib
import warnings

import keras

from keras_homeostasis import call_hooks
from keras_homeostasis import distribute_compat
from keras_homeostasis import held_norms
from keras_homeostasis import input_centering
from keras_homeostasis import layer_modes
from keras_homeostasis import layer_selection
from keras_homeostasis.settings import validate_norm_relaxation
from keras_homeostasis.settings import validate_settings
from keras_homeostasis.unit_state import UnitState
from keras_homeostasis.validation import validate_flag

STATE_ATTRIBUTE = "homeostasis"


@keras.saving.register_keras_serializable(package="keras_homeostasis")
class SynapticScalingCallback(keras.callbacks.Callback):
    """Homeostatic synaptic scaling of a model's Dense and Conv layers.

    After every optimizer step, two homeostatic mechanisms act on each unit
    (see `keras_homeostasis.rule`): synaptic scaling multiplies its incoming
    weights (kernel column or convolution filter) by a factor `s_i` that
    moves the spread of its pre-activation toward its layer's (geometric
    mean) spread `g`, and `g` toward `target_std` at `anchor` times the rate,

        log s_i = clip(rate * ((log g - log sigma_i)
                               + anchor * (log target_std - log g)), ...)

    and intrinsic plasticity moves its bias so that it fires as often as the
    other units of its layer (and, with `target_rate`, the layer toward that
    firing rate, again at `anchor` times the rate). By default every unit of
    a layer is held at one spread and one firing rate, as BatchNormalization
    holds them, through its own weights: the trained model is a plain model.

    By default (`center_inputs=True, hold_norms=True`) the callback also
    holds each unit's offset against the kernel's changes and lets the rule
    alone set each unit's kernel norm, so the optimizer turns the units and
    homeostasis sets their scale and offset: plain layers train as the
    centered, scale-invariant homeostatic layers, and every unit is used
    as evenly as under BatchNormalization (README, "Results"). That costs a
    copy of each scaled kernel and passes over it every step (README,
    "Overhead"); `center_inputs=False, hold_norms=False` is the rule alone,
    cheaper and less balanced, which also takes `min_gain`/`max_gain` and
    every optimizer.

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
    wrapped, and they count in Keras' `train_step` (also in a subclassed model
    whose `call` does not forward `training`), never in `evaluate`, `predict`,
    other callbacks' calls or calls with `training=False`. A scaled layer no
    training pass reached is named in a warning at `on_train_end`. The hooks
    are removed at `on_train_end`, and a later `fit` with the same callback
    puts them back and reuses the compiled train function (no retrace, no
    XLA recompile, unless the model was recompiled); after a `fit` that raised or was
    interrupted (Keras calls no callback then), the next `fit`,
    `train_on_batch` or `SynapticScalingCallback` on the model removes them
    first, so the model trains as if it had never been hooked. For
    `train_on_batch` and custom loops, use `with callback.attached(model):`.

    A model that `fit` has not built when it starts (a subclassed model never
    called, or a `Sequential` model without an `Input`) is built from the
    first batch's shapes and bound in the first step, which is already
    scaled: the run is the run of the same model built beforehand. Under
    `attached`, the model's first call on data binds it. To restore a
    checkpoint into such a model, build it first.

    The state (traces, gains, counters) lives in `UnitState` variables attached
    to each layer as `layer.homeostasis`: `save_weights`, `ModelCheckpoint`,
    `BackupAndRestore` and `.keras` files include it. The state is created in
    `set_model`, before any `on_train_begin`, so the order relative to
    `BackupAndRestore` does not matter. To resume from a file with a fresh
    model, call `callback.set_model(model)` before `model.load_weights(path)`.

    Args:
        layers: optional list of layer names and/or layer classes to scale.
            By default, every trainable `Dense`, `Conv1D`, `Conv2D` and
            `Conv3D` layer except the model's output layers: those a model
            output depends on through parameter-free layers or ops only
            (`Softmax`, `Activation`, `Reshape`, `Dropout`, casts), found by
            tracing the model's graph. A class selects the hidden layers of
            that class; an output layer is scaled only when named. Layers the
            callback cannot scale (recurrent, depthwise, separable,
            transposed convolutions, wrappers, LoRA-enabled or quantized
            layers) raise a `ValueError` saying why when named.
        exclude: optional list of layer names and/or layer classes never to
            scale. For a subclassed model whose graph cannot be traced,
            `exclude=` (naming its output layers) replaces the automatic
            output detection.
        target_std: set point of the layer's pre-activation standard
            deviation (> 0), or None to leave the layer's scale to the
            optimizer.
        target_rate: set point of the layer's firing rate (fraction of
            positive pre-activations), in (0, 1), or None (default) for the
            layer's own rate.
        anchor: how fast each layer moves to `target_std` and `target_rate`,
            as a fraction of `rate` and `bias_rate`, in [0, 1]. Units always
            move toward their layer's mean at the full rates; 0.01 (default)
            is a slow drift, 1 pulls every unit straight to the set points.
        rate: fraction of the log spread error corrected per step, in
            (0, 1]; 0.03 (default).
        bias_rate: fraction of the mean pre-activation error corrected by
            the bias per step, in [0, 1] (0 disables intrinsic plasticity);
            0.03 (default).
        momentum: momentum of the traces, in [0, 1). The traces are
            bias-corrected, so they hold a measurement from the first step.
        max_step: bound on |log s_i| per step, in (0, 1].
        min_gain: optional lower bound on a unit's cumulative factor, in
            (0, 1]; None (default) leaves it unbounded.
        max_gain: optional upper bound on a unit's cumulative factor, >= 1;
            None (default) leaves it unbounded.
        period: run the rule on every `period`-th optimizer step only, on
            that step's statistics (1, the default: every step). Its traces
            decay by `momentum ** period` per run, so they span as many
            optimizer steps; the steps between are the optimizer's alone
            (nothing sensed, nothing rescaled), which is what makes online
            training cheaper. `rate`, `bias_rate` and `max_step` stay per
            optimizer step: a run corrects what `period` steps would have.
        warmup: observed steps before the first action (at `period` > 1,
            runs of the rule: `warmup * period` optimizer steps).
        silence_evidence: None (default) or a number of examples, >= 1. A
            unit's offset (its mean pre-activation in spreads) is read as
            if its drive were Gaussian; a drive peaked at the background (a
            filter on non-negative pixels) can be silent on every input at
            an offset where a Gaussian one fires often, and the rule would
            hold it there. With a number `k`, a unit that fired on none of
            a step's values where its offset expected it to fire on `k` of
            the step's examples or more is taken at the offset its silence
            allows, `Phi^-1(k / examples)`, so intrinsic plasticity brings
            it back. It acts only on steps of more than `k` examples (never
            at batch size 1); 10 is the value measured (README, "Silent
            units").
        max_offset: None (default) or a number of spreads, > 0: keep every
            unit's offset (its mean pre-activation in spreads) within
            `[-max_offset, max_offset]`, so that no unit fires on fewer
            than `Phi(-max_offset)` of its inputs (16% at 1) or more than
            `Phi(max_offset)`. A unit an optimizer step pushed past the
            bound is moved back to it in the same step, where `bias_rate`
            would take many steps: at large learning rates one step of a
            bias can silence a layer (README, "Learning rate").
        log_dir: optional directory for TensorBoard's Homeostasis dashboard:
            when given, a `keras_homeostasis.tensorboard.HomeostasisLogger`
            writes each scaled unit's activity and factor there.
        log_freq: log every `log_freq` optimizer steps and at epoch ends
            (`"batch"`: every step, as Keras' TensorBoard `update_freq`), or
            `"epoch"` for epoch ends only.
        center_inputs: (default True) hold each unit's offset against the
            kernel's changes, as the homeostatic layers' `center_inputs=True`
            does: after
            every step, each scaled layer's bias gives back what the
            kernel's change did to its units' drive at a trace of the
            layer's input mean (`keras_homeostasis.input_centering`). The
            model stays a plain model. It needs a Dense or Conv layer with a
            bias: one the callback picked that is not (`use_bias=False`, a
            transposed convolution) is scaled uncentered, with a warning
            naming it; one named in `layers` is refused
            (`keras_homeostasis.layer_modes`).
        center_gradients: with `center_inputs=True`, also give each scaled
            Dense layer's kernel the gradient of its centered inputs,
            `(x - x_bar) * dL/dz`, as the centered layers have it (default
            True; the forward pass's values are unchanged). False keeps the
            plain gradient: better where a Dense layer reads convolutions'
            features (the small CNN, README "The callback with centered
            inputs"), worse in an MLP under Adam.
        hold_norms: (default True) let the rule alone set each unit's
            kernel norm, as the
            homeostatic layers' `scale_invariant=True` does: after every
            optimizer step each scaled unit's incoming weights are put back
            to the norm the rule holds for it (`exp(log_gain)`, from the
            initial norm on, times the rule's factors), and the optimizer
            steps each unit's direction vector, as in a scale-invariant
            layer: it gets the vectors' gradient, and its steps lengthen
            them, so later steps turn the units less. Plain layers then
            train as `scale_invariant=True` layers do, under any optimizer
            driven by gradients alone (`held_norms.HeldNorms` keeps a copy
            of each kernel for it); optimizers whose steps also read the
            weights (AdamW's and Muon's decay, Lamb's trust ratio,
            Adafactor's relative step) train them close to the layers;
            `Ftrl` and `ScheduleFreeAdamW`, which set the weights from
            state of their own, are refused at `on_train_begin` (train
            them with `hold_norms=False`). The
            model stays a plain model. With
            `center_inputs=True` it keeps batch-size-1 training with
            momentum SGD from diverging at steps where centering alone
            does (README, "Larger steps at batch size 1"). Not with
            `min_gain` or `max_gain`. A transposed convolution, or a layer
            that does not read its kernel through Keras' `_kernel`, is
            scaled without it when the callback picked it (with a warning
            naming it), and refused when named in `layers`.
        norm_relaxation: with `hold_norms=True`, the fraction by which
            each unit's direction-vector length moves toward its norm (in
            logs) at each optimizer step, as the layers' `norm_relaxation`:
            the optimizer lengthens the vectors, which shrinks every later
            step; `1e-4` undoes that over about 10,000 steps, for long
            continual learning. Default 0.

    Example:

    ```python
    model.fit(x, y, epochs=5, callbacks=[SynapticScalingCallback()])
    ```
    """

    def __init__(
        self,
        layers=None,
        exclude=None,
        log_dir=None,
        log_freq=100,
        center_inputs=True,
        center_gradients=True,
        hold_norms=True,
        norm_relaxation=0.0,
        **settings,
    ):
        super().__init__()
        self.settings = validate_settings(**settings)
        self.center_inputs = validate_flag("center_inputs", center_inputs)
        self.center_gradients = validate_flag("center_gradients", center_gradients)
        self.hold_norms = held_norms.validate(hold_norms, self.settings)
        self.norm_relaxation = validate_norm_relaxation(
            norm_relaxation, "hold_norms", self.hold_norms
        )
        self.layers = layer_selection.validate_selection(layers)
        self.exclude = layer_selection.validate_selection(exclude, "exclude")
        self._logger = _make_logger(log_dir, log_freq, self.settings)
        self.log_dir = None if self._logger is None else self._logger.log_dir
        self.log_freq = log_freq
        self._bindings = []
        self._hooks = None
        self._logger_waits = False

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
        chosen = layer_selection.select_layers(model, self.layers, self.exclude)
        order = {id(v): i for i, v in enumerate(model.trainable_variables)}
        chosen.sort(key=lambda layer: order.get(id(layer.kernel), len(order)))
        self._bindings = []
        modes = layer_modes.layer_modes(
            model,
            chosen,
            self.center_inputs,
            self.hold_norms,
            named=self.layers is not None,
        )
        with model.distribute_strategy.scope():
            for layer, mode in zip(chosen, modes):
                state = self._state_of(layer, mode)
                self._bindings.append((layer, state, self.settings))

    def _state_of(self, layer, mode):
        state = getattr(layer, STATE_ATTRIBUTE, None)
        if not isinstance(state, UnitState):
            state = self._new_state(layer, mode)
        if (state.centering is not None) != mode.centered:
            raise ValueError(
                f"Layer {layer.name!r} holds the homeostatic state of a "
                f"callback with center_inputs={not mode.centered}; this "
                f"one has center_inputs={mode.centered}. Use the same "
                "setting, or a fresh model."
            )
        if state.scales_kernel == mode.held:
            raise ValueError(
                f"Layer {layer.name!r} holds the homeostatic state of a "
                f"callback with hold_norms={not mode.held}; this one has "
                f"hold_norms={mode.held}. Use the same setting, or a "
                "fresh model."
            )
        state.kernel_axis = layer_selection.kernel_unit_axis(layer)
        if state.held is not None:
            state.held.relaxation = self.norm_relaxation
        if state.centering is not None:
            dense = state.centering.kernel_rank == 2
            state.centering.centers_gradient = self.center_gradients and dense
        return state

    def _new_state(self, layer, mode):
        units = layer_selection.unit_count(layer)
        centering = None
        if mode.centered:
            centering = input_centering.for_layer(layer)
        log_gain, held = None, None
        if mode.held:
            log_gain = held_norms.initial_log_gain(layer)
            held = held_norms.HeldNorms(layer.kernel, name="held_norms")
        state = UnitState(
            units,
            log_gain=log_gain,
            centering=centering,
            held=held,
            name=f"{layer.name}_homeostasis",
        )
        if mode.held:
            held_norms.hold(state)
        # Bypass Keras' tracking: the model's weights stay those of the plain
        # layer, while saving still walks this attribute and keeps the state.
        object.__setattr__(layer, STATE_ATTRIBUTE, state)
        return state

    def on_train_begin(self, logs=None):
        # A model Keras has not built yet (subclassed, or Sequential without
        # an `Input`) is built and bound in the first trace of its train step.
        self._check_model()
        self._start_held_steps()
        self._attach(lazy_removal=True)
        self._logger_waits = not self._bindings
        if not self._logger_waits:
            self._forward("on_train_begin", logs)

    def _check_model(self):
        if self.model is None:
            raise ValueError(
                "SynapticScalingCallback has no model: pass it to `fit` in "
                "`callbacks=`, or use `with callback.attached(model):`."
            )
        distribute_compat.check_steps_per_execution(self.model)
        if self.hold_norms:
            held_norms.check_optimizer(getattr(self.model, "optimizer", None))
        if not self._bindings and self.model.built:
            self._bind(self.model)

    def _start_held_steps(self):
        # Weights set or loaded between fits: the first step starts there.
        for layer, state, _ in self._bindings:
            if state.held is not None:
                state.start_held_steps(layer.kernel)

    def _bind_when_built(self, model):
        # Called by the hooks once Keras has built a model that was not.
        self._bind(model)
        return self._bindings

    def _attach(self, lazy_removal):
        self._detach()
        if self._hooks is None or not self._hooks.serves(
            self.model, self._bindings, lazy_removal
        ):
            self._hooks = call_hooks.CallHooks(
                self.model,
                self._bindings,
                lazy_removal=lazy_removal,
                bind=self._bind_when_built,
            )
        try:
            self._hooks.install()
        except BaseException:
            self._detach()
            raise
        self._set_collecting(1.0)

    def _detach(self):
        # The hooks stay known (inactive): the next fit installs them again
        # and reuses their compiled train function.
        if self._hooks is not None:
            self._hooks.remove()
        return self._hooks

    def on_train_batch_end(self, batch, logs=None):
        if self._logger_waits:
            # The layers it logs were bound in the first step.
            self._logger_waits = False
            self._forward("on_train_begin", None)
        self._forward("on_train_batch_end", batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._forward("on_epoch_end", epoch, logs)

    def on_train_end(self, logs=None):
        hooks = self._detach()
        self._forward("on_train_end", logs)
        if hooks is not None:
            _warn_unsensed(hooks)

    @contextlib.contextmanager
    def attached(self, model):
        """Scales `model` inside the `with` block, for loops other than `fit`.

        The hooks `fit` would install (sensor, scaling constraints) are on
        for the block and removed when it exits, even on an exception. Inside
        it, `model.train_on_batch(...)` counts and scales like a step of
        `fit`; a custom loop counts calls with `training=True` and scales at
        `optimizer.apply(...)`; `evaluate`, `predict` and `training=False`
        calls do not count.

        Example:

        ```python
        with callback.attached(model):
            for x, y in batches:
                model.train_on_batch(x, y)
        ```
        """
        self.set_model(model)
        self._check_model()
        self._start_held_steps()
        self._attach(lazy_removal=False)
        waits = not self._bindings
        if not waits:
            self._forward("on_train_begin", None)
        try:
            yield self
        finally:
            self._detach()
            if waits and self._bindings:
                # Bound in the block: the logger can find its layers now.
                self._forward("on_train_begin", None)
            self._forward("on_train_end", None)

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

    def __deepcopy__(self, memo):
        return type(self)(**self.get_config())

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_config(self):
        return {
            "layers": layer_selection.selection_config(self.layers),
            "exclude": layer_selection.selection_config(self.exclude),
            "log_dir": self.log_dir,
            "log_freq": self.log_freq,
            "center_inputs": self.center_inputs,
            "center_gradients": self.center_gradients,
            "hold_norms": self.hold_norms,
            "norm_relaxation": self.norm_relaxation,
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


def _warn_unsensed(hooks):
    unsensed = [
        layer.name for layer, _, _ in hooks.bindings if id(layer) not in hooks.sensed
    ]
    if unsensed:
        warnings.warn(
            f"SynapticScalingCallback: no training pass of layer(s) {unsensed} "
            "was seen, so they were not scaled. Is the layer called in the "
            "model's `call` (with `training` not False)?",
            stacklevel=3,
        )
