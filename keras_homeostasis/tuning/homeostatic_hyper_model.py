"""`HomeostaticHyperModel`: a keras-tuner search over the homeostatic settings."""

import collections
import inspect
import math
import os

import keras

try:
    import keras_tuner
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "keras_homeostasis.tuning needs keras-tuner: pip install keras-tuner "
        "(or pip install keras-homeostasis[tuning])"
    ) from e

from keras_homeostasis import layer_selection
from keras_homeostasis.settings import validate_settings
from keras_homeostasis.synaptic_scaling_callback import SynapticScalingCallback
from keras_homeostasis.tensorboard import HomeostasisLogger
from keras_homeostasis.tensorboard.homeostasis_logger import validate_update_freq
from keras_homeostasis.tuning import search_space as space_lib
from keras_homeostasis.tuning.usage_entropy_callback import SCORE_KEY
from keras_homeostasis.tuning.usage_entropy_callback import UsageEntropyCallback
from keras_homeostasis.tuning.usage_entropy_callback import non_negative_number

# Log entries whose non-finite value marks a diverged trial.
DIVERGENCE_KEYS = ("loss", "val_loss", SCORE_KEY)


class HomeostaticHyperModel(keras_tuner.HyperModel):
    """Wraps a model-building function and searches the homeostatic settings.

    `build(hp)` calls `build_model(hp)` (your model and its own
    hyper-parameters, compiled, with plain Dense/Conv layers) and registers
    the homeostatic hyper-parameters of `search_space` under the `scaling/`
    prefix: the set points (`scaling/target_mode`: an absolute firing-rate
    set point `scaling/target_rate`, shared or per layer, or the layer's
    own means: pure load balancing), `rate` and `bias_rate` (log),
    `momentum` (reverse log, i.e. dense near 1), `period` (log) and
    `warmup`. `max_step`, `min_gain`, `max_gain` and `target_std` keep
    their base settings unless the search space names them. See
    `keras_homeostasis.tuning.search_space` for the ranges and how to change
    them.

    `fit(hp, model, ...)` builds this trial's `SynapticScalingCallback`(s)
    from `hp` (callbacks given to `search()` are deep-copied by keras-tuner,
    never parameterised by `hp`; a search space naming `center_inputs`
    draws the callback's `center_inputs` too) and puts them first, then:

    - with `validation_data`, a `UsageEntropyCallback` that adds
      `val_usage_entropy` and `val_homeostasis_score = val_accuracy +
      entropy_weight * val_usage_entropy` to the logs, so either can be the
      objective (`homeostasis_objective()`);
    - a `TerminateOnNaN` (unless one was given), and after training a check
      of the history: a non-finite loss or score raises
      `keras_tuner.errors.FailedTrialError`, so keras-tuner marks the trial
      `FAILED`, never retries it and never returns it as the best trial
      (while at least one trial completed). keras-tuner stops a search
      after `max_consecutive_failed_trials` (default 3) failures in a row.

    With `homeostatic_layers=True` the model scales itself: `build` calls
    `build_model(hp, settings)`, where `settings` holds this trial's
    settings and, when the search space names them, the layers' own
    `scale_invariant`, `norm_relaxation` and `center_inputs`; build the
    model's homeostatic layers with `**settings`. No callback is added (the
    usage entropy is measured on the homeostatic layers), and per-layer
    `target_rate`s are not offered (every layer gets the same settings).

    The scaling state (`layer.homeostasis`) and the optimizer's variables are
    created in `build`, so keras-tuner's best-epoch checkpoints include them
    and `get_best_models()` and Hyperband's continued trials restore them.

    TensorBoard: when `search()` receives a `keras.callbacks.TensorBoard`,
    keras-tuner gives it a folder per trial and execution
    (`<log_dir>/<trial_id>/execution<k>`); the homeostasis summaries of that
    execution go to its `homeostasis` subfolder. With `log_dir` set here,
    they go to `<log_dir>/<trial_id>/execution<k>` instead.

    Args:
        build_model: a function `build_model(hp)` returning a compiled,
            built `keras.Model` with plain (non-homeostatic) layers.
        layers: optional layers to scale (names and/or classes, as for
            `SynapticScalingCallback`); default every hidden Dense/Conv layer.
            Unused with `homeostatic_layers=True` (the model's homeostatic
            layers are the scaled ones).
        search_space: optional mapping of parameter names to specs that
            replace the defaults (`None` = not searched, a scalar = fixed, a
            list = choice, `{"min", "max", "sampling", "step"}` = range).
        settings: settings of the parameters not searched; defaults to
            `keras_homeostasis.settings.DEFAULTS`.
        entropy_weight: weight of the usage entropy in `val_homeostasis_score`.
        log_dir: optional root folder of per-trial homeostasis summaries.
        log_freq: summaries every `log_freq` optimizer steps, or `"epoch"`.
        seed: optional seed: `build` seeds the weights with it (every trial
            starts from comparable weights); each execution of a trial seeds
            its data order with `seed + execution`.
        homeostatic_layers: whether `build_model(hp, settings)` builds
            homeostatic layers with the trial's settings (see above)
            instead of plain layers scaled by the callback.
        callback_options: optional options of every trial's
            `SynapticScalingCallback` that the search space does not draw
            (`center_inputs`, `center_gradients`, `hold_norms`,
            `norm_relaxation`); by default the callback's own defaults. An
            option the space draws replaces its entry, e.g.
            `{"center_inputs": False, "hold_norms": False}` searches the
            rule alone.
        name, tunable: as for `keras_tuner.HyperModel`.

    Example:

    ```python
    def build_model(hp):
        model = keras.Sequential([
            keras.Input((64,)),
            keras.layers.Dense(hp.Choice("units", [64, 128]), activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ])
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        return model

    tuner = keras_tuner.BayesianOptimization(
        HomeostaticHyperModel(build_model, entropy_weight=0.1, seed=0),
        objective=homeostasis_objective(), max_trials=20, seed=0,
        directory="runs", project_name="tune")
    tuner.search(x, y, epochs=5, validation_data=(x_val, y_val))
    ```
    """

    def __init__(
        self,
        build_model,
        layers=None,
        search_space=None,
        settings=None,
        entropy_weight=0.0,
        log_dir=None,
        log_freq="epoch",
        seed=None,
        homeostatic_layers=False,
        callback_options=None,
        name=None,
        tunable=True,
    ):
        super().__init__(name=name, tunable=tunable)
        if not callable(build_model):
            raise TypeError(
                "Expected `build_model` to be a function `build_model(hp)` "
                f"returning a Keras model. Received: build_model={build_model!r}"
            )
        self.build_model = build_model
        self.layers = layer_selection.validate_selection(layers)
        if not isinstance(homeostatic_layers, bool):
            raise TypeError(
                "Expected `homeostatic_layers` to be True or False. Received: "
                f"homeostatic_layers={homeostatic_layers!r}"
            )
        self.homeostatic_layers = homeostatic_layers
        self.callback_options = _callback_options(callback_options)
        self.search_space = space_lib.validate_for_model(
            search_space,
            homeostatic_layers,
            held_by_default=self.callback_options.get(
                "hold_norms", _callback_default("hold_norms")
            ),
        )
        self.settings = validate_settings(**(settings or {}))
        self.entropy_weight = non_negative_number("entropy_weight", entropy_weight)
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.log_freq = validate_update_freq(log_freq, "log_freq")
        self.seed = _seed(seed)
        self._executions = collections.Counter()

    def build(self, hp):
        if self.seed is not None:
            keras.utils.set_random_seed(self.seed)
        if self.homeostatic_layers:
            model = self.build_model(hp, self.layer_settings(hp))
        else:
            model = self.build_model(hp)
        if not isinstance(model, keras.Model):
            raise keras_tuner.errors.FatalTypeError(
                "Expected `build_model(hp)` to return a keras.Model. "
                f"Received: {model!r} of type {type(model).__name__}"
            )
        if self.homeostatic_layers and not self._scaled_names(model):
            raise keras_tuner.errors.FatalValueError(
                "`homeostatic_layers=True` expects `build_model(hp, settings)` "
                "to build homeostatic layers (e.g. HomeostaticDense(..., "
                f"**settings)). Received a model without any: {model.name!r}"
            )
        # Creates the scaling state now, so checkpoints always carry it.
        self.scaling_callbacks(hp, model)
        # A built optimizer takes its state from a checkpoint too (Hyperband's
        # continued trials, `get_best_models`); an unbuilt one skips it.
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(model.trainable_variables)
        return model

    def layer_settings(self, hp):
        """This trial's arguments for homeostatic layers (registers `hp`).

        The rule's settings of the search space plus `scale_invariant`,
        `norm_relaxation` and `center_inputs` when the space names them:
        pass them as `HomeostaticDense(units, **settings)`.
        """
        ((_, settings),) = space_lib.declare(hp, self.search_space, [], self.settings)
        return {**settings, **space_lib.declare_layer_options(hp, self.search_space)}

    def _scaled_names(self, model):
        if self.homeostatic_layers:
            layers = layer_selection.all_layers(model)
            return [x.name for x in layers if layer_selection.is_homeostatic(x)]
        return [x.name for x in layer_selection.select_layers(model, self.layers)]

    def scaling_callbacks(self, hp, model, log_dir=None):
        """This trial's scaling callbacks (and loggers, with `log_dir`).

        Registers the search space on `hp` (a no-op for values already
        drawn) and returns one `SynapticScalingCallback` for shared
        settings, or one per layer for per-layer `target_rate` set points,
        each already bound to `model`. Use it to retrain the best
        configuration:
        `model.fit(..., callbacks=hypermodel.scaling_callbacks(best_hp, model))`.
        With `homeostatic_layers=True` the model scales itself: only the
        loggers (with `log_dir`) are returned.
        """
        names = self._scaled_names(model)
        if self.homeostatic_layers:
            if log_dir is None:
                return []
            return [HomeostasisLogger(log_dir, update_freq=self.log_freq, layers=names)]
        groups = space_lib.declare(hp, self.search_space, names, self.settings)
        # `center_inputs` and `hold_norms`: the callback's own arguments.
        options = space_lib.declare_layer_options(hp, self.search_space)
        callbacks = []
        options = {**self.callback_options, **options}
        for group, settings in groups:
            callback = SynapticScalingCallback(
                layers=self.layers if group is None else group, **options, **settings
            )
            callback.set_model(model)
            callbacks.append(callback)
        if log_dir is not None:
            for group, settings in groups:
                callbacks.append(
                    HomeostasisLogger(
                        log_dir,
                        update_freq=self.log_freq,
                        layers=group or names,
                        settings=settings,
                    )
                )
        return callbacks

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        callbacks = list(callbacks or [])
        trial_id = _trial_id(callbacks)
        execution = self._executions[trial_id]
        self._executions[trial_id] += 1
        if self.seed is not None:
            keras.utils.set_random_seed(self.seed + execution)
        log_dir = self._trial_log_dir(callbacks, trial_id, execution)
        own = self.scaling_callbacks(hp, model, log_dir=log_dir)
        validation_data = kwargs.get("validation_data")
        if validation_data is not None:
            scaled = self._scaled_names(model)
            own.append(
                UsageEntropyCallback(
                    validation_data, layers=scaled, entropy_weight=self.entropy_weight
                )
            )
        if not any(isinstance(c, keras.callbacks.TerminateOnNaN) for c in callbacks):
            own.append(keras.callbacks.TerminateOnNaN())
        history = model.fit(*args, callbacks=own + callbacks, **kwargs)
        raise_if_diverged(history)
        return history

    def _trial_log_dir(self, callbacks, trial_id, execution):
        if self.log_dir is not None:
            folder = "fit" if trial_id is None else str(trial_id)
            return os.path.join(self.log_dir, folder, f"execution{execution}")
        for callback in callbacks:
            # keras-tuner gives a per-trial folder to this class name only.
            if type(callback).__name__ == "TensorBoard":
                return os.path.join(str(callback.log_dir), "homeostasis")
        return None


def homeostasis_objective():
    """The objective `val_homeostasis_score` (accuracy + weighted entropy), max."""
    return keras_tuner.Objective(SCORE_KEY, direction="max")


def raise_if_diverged(history):
    """Raises `FailedTrialError` if a loss or the score is not finite."""
    for key in DIVERGENCE_KEYS:
        for epoch, value in enumerate(history.history.get(key, []), start=1):
            if not math.isfinite(float(value)):
                raise keras_tuner.errors.FailedTrialError(
                    f"The model diverged: `{key}` was {value} at epoch {epoch}. "
                    "The trial is marked failed and is never chosen as the best."
                )


def _trial_id(callbacks):
    # keras-tuner's own callback carries the trial (`TunerCallback.trial`).
    for callback in callbacks:
        trial = getattr(callback, "trial", None)
        if trial is not None and hasattr(trial, "trial_id"):
            return trial.trial_id
    return None


def _seed(seed):
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(
            "Received an invalid value for `seed`, expected None or an integer "
            f">= 0. Received: seed={seed!r}"
        )
    return seed


# The `SynapticScalingCallback` options `callback_options` may set.
CALLBACK_OPTIONS = (
    "center_inputs",
    "center_gradients",
    "hold_norms",
    "norm_relaxation",
)


def _callback_options(options):
    options = dict(options or {})
    unknown = sorted(set(options) - set(CALLBACK_OPTIONS))
    if unknown:
        raise ValueError(
            f"Unknown `callback_options` {unknown}; expected some of "
            f"{list(CALLBACK_OPTIONS)}. Received: callback_options={options!r}"
        )
    return options


def _callback_default(name):
    """`SynapticScalingCallback`'s default for its argument `name`."""
    signature = inspect.signature(SynapticScalingCallback.__init__)
    return signature.parameters[name].default
