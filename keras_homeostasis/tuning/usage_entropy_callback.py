"""`UsageEntropyCallback`: usage entropy on validation data, written into logs."""

import math

import keras
import numpy as np

from keras_homeostasis import layer_selection
from keras_homeostasis import metrics
from keras_homeostasis.unit_state import UnitState
from keras_homeostasis.validation import positive_int

ENTROPY_KEY = "val_usage_entropy"
SCORE_KEY = "val_homeostasis_score"


@keras.saving.register_keras_serializable(package="keras_homeostasis")
class UsageEntropyCallback(keras.callbacks.Callback):
    """Adds the hidden units' usage entropy on validation data to the logs.

    At the end of every epoch it measures, on (up to `max_samples` of) the
    validation inputs in inference mode, the normalised usage entropy
    `H(p) / log(n)` of each layer in `layers` (`p_i = a_i / sum_j a_j`, `a_i`
    a unit's mean |output|; 1.0 means every unit does an equal share), and
    writes two entries into the epoch's logs:

        val_usage_entropy     = mean over the layers of H(p) / log(n)
        val_homeostasis_score = val_accuracy + entropy_weight * val_usage_entropy

    Callbacks after it (`History`, `TensorBoard`, keras-tuner's checkpointing
    and objective) see both, so `val_homeostasis_score` can be a keras-tuner
    objective: `keras_tuner.Objective("val_homeostasis_score", "max")`. With
    `entropy_weight=0` the score is the validation accuracy. A non-finite
    entropy (a diverged model) gives a NaN score.

    Place it before the callbacks that read these entries (the
    `HomeostaticHyperModel` puts it first). Forward passes of homeostatic
    layers during its measurement are not counted in their statistics.

    Args:
        validation_data: validation inputs: an array, an `(x, y)` tuple or a
            `tf.data.Dataset` of inputs or `(x, y)` batches.
        layers: names of the layers to measure; by default every Dense and
            Conv layer except the output layers.
        entropy_weight: weight `w >= 0` of the entropy in the score.
        accuracy_key: the log entry of the validation accuracy.
        max_samples: measure on at most this many samples (arrays) or
            batches of 32 (datasets), for speed.

    Example:

    ```python
    callback = UsageEntropyCallback((x_val, y_val), entropy_weight=0.1)
    history = model.fit(x, y, validation_data=(x_val, y_val), epochs=3,
                        callbacks=[callback])
    history.history["val_homeostasis_score"]
    ```
    """

    def __init__(
        self,
        validation_data,
        layers=None,
        entropy_weight=0.0,
        accuracy_key="val_accuracy",
        max_samples=2048,
    ):
        super().__init__()
        self.validation_data = _inputs(validation_data)
        self.layers = None if layers is None else list(layers)
        self.entropy_weight = non_negative_number("entropy_weight", entropy_weight)
        self.accuracy_key = accuracy_key
        self.max_samples = positive_int("max_samples", max_samples)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        entropy = self.measure()
        logs[ENTROPY_KEY] = entropy
        accuracy = logs.get(self.accuracy_key, 0.0)
        logs[SCORE_KEY] = float(accuracy) + self.entropy_weight * entropy

    def measure(self):
        """Mean normalised usage entropy of the layers on the validation inputs."""
        states = [
            s
            for layer in layer_selection.all_layers(self.model)
            if isinstance(s := getattr(layer, "homeostasis", None), UnitState)
        ]
        saved = [float(s.collecting.numpy()) for s in states]
        for state in states:
            state.collecting.assign(0.0)
        try:
            stats = metrics.layer_statistics(
                self.model, self._data(), layers=self.layers, **self._limit()
            )
        finally:
            for state, value in zip(states, saved):
                state.collecting.assign(value)
        values = [metrics.usage_entropy(activity) for activity, _ in stats.values()]
        if not values or not all(math.isfinite(v) for v in values):
            return float("nan")
        return float(np.mean(values))

    def _data(self):
        if isinstance(self.validation_data, np.ndarray):
            return self.validation_data[: self.max_samples]
        return self.validation_data

    def _limit(self):
        if isinstance(self.validation_data, np.ndarray):
            return {}
        return {"steps": max(1, self.max_samples // 32)}

    def __deepcopy__(self, memo):
        # A tf.data.Dataset cannot be deep-copied: copies share it.
        data = self.validation_data
        if isinstance(data, np.ndarray):
            data = data.copy()
        config = self.get_config()
        config["validation_data"] = data
        return type(self)(**config)

    def get_config(self):
        data = self.validation_data
        return {
            "validation_data": data.tolist() if isinstance(data, np.ndarray) else None,
            "layers": self.layers,
            "entropy_weight": self.entropy_weight,
            "accuracy_key": self.accuracy_key,
            "max_samples": self.max_samples,
        }


def _inputs(data):
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, tuple):
        if not data:
            raise ValueError(
                "Received an invalid value for `validation_data`, expected "
                f"inputs or an (x, y) tuple. Received: validation_data={data!r}"
            )
        data = data[0]
    try:
        array = np.asarray(keras.ops.convert_to_numpy(data))
    except (TypeError, ValueError):
        array = np.asarray(None)
    if array.ndim < 1 or array.shape[0] < 1 or array.dtype == object:
        raise ValueError(
            "Received an invalid value for `validation_data`, expected a "
            "non-empty batch of inputs, an (x, y) tuple or a tf.data.Dataset. "
            f"Received: validation_data of type {type(data).__name__}"
        )
    return array


def non_negative_number(name, value):
    """A finite number >= 0 as a float; raises naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"Expected a number for `{name}`. Received: {name}={value!r} "
            f"of type {type(value).__name__}"
        )
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected a finite number "
            f">= 0. Received: {name}={value!r}"
        )
    return float(value)
