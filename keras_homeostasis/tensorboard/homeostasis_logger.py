"""`HomeostasisLogger`: unit usage summaries for the Homeostasis dashboard."""

import copy
import os

import keras
import numpy as np

from keras_homeostasis import layer_selection
from keras_homeostasis import metrics
from keras_homeostasis.input_mean import InputMean
from keras_homeostasis.settings import validate_settings
from keras_homeostasis.tensorboard import summary
from keras_homeostasis.unit_state import UnitState
from keras_homeostasis.weight_normalization import unit_norms

# Attribute holding a layer's `UnitState` (callback-scaled and homeostatic layers).
STATE_ATTRIBUTE = "homeostasis"
# Firing rate (fraction of positive pre-activations) at or below which a
# scaled unit is shown as dead.
SILENT_RATE = 1e-3


@keras.saving.register_keras_serializable(package="keras_homeostasis")
class HomeostasisLogger(keras.callbacks.Callback):
    """Writes each unit's usage to TensorBoard's Homeostasis dashboard.

    Every `update_freq` optimizer steps, and at the end of every epoch, it
    writes one `keras_homeostasis.tensorboard.summary.unit_usage` summary
    per layer: each unit's mean |activity| `a_i`, its cumulative scale
    factor `s_i = exp(G_i)`, its firing rate and pre-activation spread (the
    two statistics the rule controls), the layer's mean activity, its usage
    entropy, coefficient of variation and dead fraction. The step is the
    optimizer's `iterations`, so runs resumed with `BackupAndRestore`
    continue their curves.

    Two kinds of layers are logged:

    - layers scaled by keras_homeostasis (a `SynapticScalingCallback` or a
      homeostatic layer, which keep a `UnitState` at `layer.homeostasis`):
      `a_i` is the state's activity trace, measured on the training
      batches; `s_i` its gain; the firing rate (fraction of positive
      pre-activations) and spread (standard deviation of the drive) are the
      bias-corrected traces the rule acts on; a unit is dead when its firing
      rate is at most `SILENT_RATE` (0.001);
    - any other layer, when `probe_data` is given: `a_i` is measured on that
      fixed batch in inference mode, `s_i = 1`, the target is the layer's
      mean activity, the firing rate is the fraction of positive outputs on
      the batch, and a unit is dead when it is never positive. The spread is
      the standard deviation of the pre-activation where the probe sees it
      (a layer without activation of its own, such as `Dense(activation=None)`
      before BatchNorm); for a layer with a built-in activation
      (`Dense(activation="relu")`) it is not measured (NaN, not drawn).
      This is how BatchNorm or plain runs are logged for comparison.

    Centered homeostatic layers (`center_inputs=True`) also write the input
    mean they subtract, and layers the callback scales with
    `center_inputs=True` the mean it holds their offsets at, as a histogram
    `<layer>/input_mean` for TensorBoard's Histograms and Distributions
    dashboards. Where the rule holds each unit's kernel norm (the callback's
    `hold_norms=True`, `scale_invariant=True` layers), `s_i` is that norm
    (the dashboard labels it so), and a histogram `<layer>/step_scale`
    holds each unit's norm over its direction vector's length: the factor
    by which the optimizer's steps reach the kernel.

    A model that `fit` builds in its first step (a subclassed model never
    called before, or a `Sequential` without an `Input`) has no layers to
    log before that step: the logger finds them after it.

    Summaries are written by the chief only (task 0 of MultiWorker training,
    or the only worker). The writer is created in `on_train_begin` and closed
    in `on_train_end`, so the callback can be deep-copied (keras-tuner).
    keras-tuner gives a per-trial folder only to callbacks named
    `TensorBoard`: in a search, trials sharing this `log_dir` share one run.
    Its order relative to `BackupAndRestore` and `ModelCheckpoint` does not
    matter: it only reads the model. With `steps_per_execution > 1`, it
    logs at the first batch end at or after each multiple of `update_freq`.

    Args:
        log_dir: directory of the run's event files, such as `"runs/bn"`
            (the run is named after it in TensorBoard).
        update_freq: log every `update_freq` optimizer steps (a positive
            integer; `"batch"` means 1, as in Keras' TensorBoard), or
            `"epoch"` to log at epoch ends only.
        probe_data: optional fixed batch of inputs (an array, or an `(x, y)`
            tuple whose `x` is used) on which unscaled layers are measured.
            Keep it small (a few hundred samples): it runs at every log.
        layers: optional list of layer names to log. By default, every
            layer with homeostatic state, plus (with `probe_data`) every
            other Dense and Conv layer except the output layers.
        settings: the homeostatic settings of the layers scaled by a
            `SynapticScalingCallback` (its `momentum` is read to correct the
            traces); homeostatic layers use their own. Defaults to the
            package defaults.

    Example:

    ```python
    logger = HomeostasisLogger("runs/batchnorm", update_freq=50,
                               probe_data=x_train[:256])
    model.fit(x_train, y_train, epochs=3, callbacks=[logger])
    # then: tensorboard --logdir runs
    ```
    """

    def __init__(
        self, log_dir, update_freq=100, probe_data=None, layers=None, settings=None
    ):
        super().__init__()
        self.log_dir = _validate_log_dir(log_dir)
        self.update_freq = validate_update_freq(update_freq)
        self.probe_data = _validate_probe_data(probe_data)
        self.layers = _validate_layers(layers)
        self.settings = validate_settings(**(settings or {}))
        self._writer = None
        self._sources = []
        self._last_step = None

    def on_train_begin(self, logs=None):
        self._close()
        if not _is_chief(self.model):
            return
        import tensorflow as tf

        self._writer = tf.summary.create_file_writer(self.log_dir)
        self._sources = None
        # A model that `fit` builds in its first step (subclassed, or a
        # Sequential without an `Input`) has no state to find before it.
        if not self.model.built:
            return
        self._sources = self._find_sources()
        if self._step() != self._last_step:  # A second `fit` resumes the curves.
            self._log(self._step())

    def on_train_batch_end(self, batch, logs=None):
        if self._writer is None:
            return
        if self._sources is None:  # A model built in its first step.
            self._sources = self._find_sources()
            self._last_step = 0 if self._last_step is None else self._last_step
        if self.update_freq == "epoch":
            return
        step = self._step()
        if step // self.update_freq > self._last_step // self.update_freq:
            self._log(step)

    def on_epoch_end(self, epoch, logs=None):
        if self._sources is None or self._writer is None:
            return
        if self._step() != self._last_step:
            self._log(self._step())

    def on_train_end(self, logs=None):
        self._close()

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def _close(self):
        if self._writer is not None:
            self._writer.close()
        self._writer = None

    def _find_sources(self):
        """`[(layer, UnitState or None)]`: what to log, and how to measure it."""
        candidates = layer_selection.all_layers(self.model)
        if self.layers is not None:
            _check_names(self.model, candidates, self.layers)
        outputs = self._output_ids()
        chosen = []
        for layer in candidates:
            state = getattr(layer, STATE_ATTRIBUTE, None)
            if not isinstance(state, UnitState):
                state = None
            if self._wanted(layer, state, outputs):
                chosen.append((layer, state))
        if not chosen:
            raise ValueError(
                f"HomeostasisLogger found nothing to log in model "
                f"'{self.model.name}': it has no layer with homeostatic state "
                "and no `probe_data` was given to measure other layers. "
                f"Received: probe_data={self.probe_data is not None}, "
                f"layers={self.layers!r}"
            )
        return chosen

    def _output_ids(self):
        """Ids of the model's output layers, which probing every layer leaves
        out. Only then is the model traced to find them: a subclassed model
        is not traceable before its first batch."""
        if self.probe_data is None or self.layers is not None:
            return set()
        return {id(x) for x in layer_selection.output_layers(self.model)}

    def _wanted(self, layer, state, outputs):
        if self.layers is not None:
            return layer.name in self.layers and (
                state is not None or self.probe_data is not None
            )
        if state is not None:
            return True
        return (
            self.probe_data is not None
            and layer_selection.is_measurable(layer)
            and id(layer) not in outputs
        )

    def _log(self, step):
        probed = self._probe()
        with self._writer.as_default():
            for layer, state in self._sources:
                if state is not None:
                    self._log_state(layer, state, step)
                else:
                    measured = probed[layer.name]
                    summary.unit_usage(
                        layer.name,
                        measured["activity"],
                        dead=measured["firing_rate"] <= 0,
                        step=step,
                        firing_rate=measured["firing_rate"],
                        spread=measured["spread"],
                    )
        self._writer.flush()
        self._last_step = step

    def _log_state(self, layer, state, step):
        settings = getattr(layer, "homeostasis_settings", None) or self.settings
        if int(state.steps.numpy()) < settings["period"]:
            return  # Traces not initialised yet: nothing measured.
        traces = {
            name: keras.ops.convert_to_numpy(value)
            for name, value in state.estimates(settings).items()
        }
        firing = traces["firing_rate"]
        gain = np.exp(keras.ops.convert_to_numpy(state.log_gain))
        lengths = _direction_lengths(layer, state)
        # Usage is shown against the layer's mean activity: the picture of
        # load balancing, whatever set points the rule holds.
        summary.unit_usage(
            layer.name,
            traces["activity"],
            factor=gain,
            dead=firing <= SILENT_RATE,
            step=step,
            firing_rate=firing,
            spread=traces["spread"],
            factor_kind="scale" if lengths is None else "norm",
        )
        if lengths is not None:
            summary.step_scale(layer.name, gain / lengths, step=step)
        input_mean = _input_mean(layer, state)
        if input_mean is not None:
            mean = keras.ops.convert_to_numpy(input_mean.mean())
            summary.input_mean(layer.name, mean, step=step)

    def _probe(self):
        names = [layer.name for layer, state in self._sources if state is None]
        if not names:
            return {}
        return metrics.unit_statistics(self.model, self.probe_data, layers=names)

    def __deepcopy__(self, memo):
        return type(self)(
            self.log_dir,
            self.update_freq,
            copy.deepcopy(self.probe_data, memo),
            self.layers,
            self.settings,
        )

    def get_config(self):
        probe = None if self.probe_data is None else self.probe_data.tolist()
        return {
            "log_dir": self.log_dir,
            "update_freq": self.update_freq,
            "probe_data": probe,
            "layers": self.layers,
            "settings": dict(self.settings),
        }


def _is_chief(model):
    """True unless this worker is a non-chief task of a multi-worker cluster."""
    import tensorflow as tf

    strategy = (
        getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
    )
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if resolver is None or not task_type or task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def _check_names(model, candidates, names):
    missing = sorted(set(names) - {layer.name for layer in candidates})
    if missing:
        raise ValueError(
            f"`layers` names {missing}, which are not layers of model "
            f"'{model.name}'. Layers: {[x.name for x in candidates]}"
        )


def _validate_log_dir(log_dir):
    if isinstance(log_dir, bytes) or not isinstance(log_dir, (str, os.PathLike)):
        raise TypeError(
            f"Expected a path for `log_dir`. Received: log_dir={log_dir!r} "
            f"of type {type(log_dir).__name__}"
        )
    log_dir = os.fspath(log_dir)
    if not log_dir:
        raise ValueError(
            "Received an invalid value for `log_dir`, expected a non-empty "
            f"path. Received: log_dir={log_dir!r}"
        )
    return log_dir


def validate_update_freq(value, name="update_freq"):
    """A positive integer, "batch" (1, as in Keras' TensorBoard) or "epoch"."""
    if value == "epoch":
        return value
    if value == "batch":
        return 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"Expected a positive integer, 'batch' or 'epoch' for `{name}`. "
            f"Received: {name}={value!r}"
        )
    if value < 1:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected a positive "
            f"integer or 'epoch'. Received: {name}={value!r}"
        )
    return value


def _validate_probe_data(probe_data):
    if probe_data is None:
        return None
    if isinstance(probe_data, tuple):
        probe_data = probe_data[0]
    try:
        array = np.asarray(keras.ops.convert_to_numpy(probe_data))
    except (TypeError, ValueError) as error:
        raise TypeError(
            "Expected an array or an (x, y) tuple for `probe_data`. Received: "
            f"probe_data of type {type(probe_data).__name__}"
        ) from error
    if array.ndim < 1 or array.shape[0] < 1 or array.dtype == object:
        raise ValueError(
            "Received an invalid value for `probe_data`, expected a non-empty "
            f"batch of inputs. Received: probe_data of shape {array.shape}"
        )
    return array


def _validate_layers(layers):
    if layers is None:
        return None
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError(
            "Expected `layers` to be None or a non-empty list of layer names. "
            f"Received: layers={layers!r}"
        )
    if not all(isinstance(name, str) for name in layers):
        raise TypeError(
            f"Expected every entry of `layers` to be a layer name. Received: "
            f"layers={layers!r}"
        )
    return list(layers)


def _direction_lengths(layer, state):
    """Each unit's direction-vector length where the rule holds the kernel
    norms (the callback's `hold_norms=True`, a `scale_invariant=True`
    layer), else None."""
    held = getattr(state, "held", None)
    if held is not None:
        return held.length.numpy()
    if getattr(layer, "scale_invariant", False):
        kernel = keras.ops.cast(layer._kernel, "float32")
        return keras.ops.convert_to_numpy(unit_norms(kernel))
    return None


def _input_mean(layer, state):
    """The `InputMean` a centered layer subtracts, or that the callback's
    `center_inputs=True` holds a plain layer's offsets at; else None."""
    if isinstance(getattr(layer, "input_mean", None), InputMean):
        return layer.input_mean
    centering = getattr(state, "centering", None)
    return None if centering is None else centering.input_mean
