"""What the documentation's code snippets take as given, on small data.

Each ```python block of README.md and docs/*.md runs after this prelude, in
a fresh process (tests/test_docs_snippets.py). The snippets show a user's
own model and data as `model`, `x`, `y`, `x_test`, ...: here they are a
small Conv/Dense classifier and 128 random 28x28 images. `fit` runs at most
QUICK_EPOCHS epochs, so a snippet's `epochs=10` stays as a user would write
it and the test stays short.
"""

import keras
import numpy as np
import tensorflow as tf

QUICK_EPOCHS = 1

keras.utils.set_random_seed(0)
_rng = np.random.default_rng(0)


def _split(n):
    images = _rng.random((n, 28, 28, 1)).astype("float32")
    return images, _rng.integers(0, 10, n).astype("int32")


x_train, y_train = _split(128)
x_val, y_val = _split(64)
x_test, y_test = _split(64)
x, y = x_train, y_train
data = x_test
dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)


def build_model(normalization=None):
    """A small classifier: Conv2D, then the hidden Dense `dense_1`."""
    layers = [keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, activation="relu")]
    if normalization == "batchnorm":
        layers.append(keras.layers.BatchNormalization())
    layers += [
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu", name="dense_1"),
        keras.layers.Dense(10, activation="softmax", name="output"),
    ]
    return keras.Sequential(layers)


model = build_model()
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
bn_model = build_model("batchnorm")
bn_model.compile("adam", "sparse_categorical_crossentropy")

# Per-unit values a user measured, for the metric functions.
activity = _rng.random(16)
positive_counts = _rng.integers(0, 5, 16)

# The originals, kept on the first run of this prelude in a process.
_fit = getattr(keras.Model.fit, "unpatched", keras.Model.fit)


def _quick_fit(self, *args, epochs=1, **kwargs):
    return _fit(self, *args, epochs=min(epochs, QUICK_EPOCHS), **kwargs)


_quick_fit.unpatched = _fit
keras.Model.fit = _quick_fit

# A search runs at most QUICK_TRIALS trials.
QUICK_TRIALS = 2
try:
    import keras_tuner
except ImportError:
    keras_tuner = None
if keras_tuner is not None:
    for _name in ("RandomSearch", "BayesianOptimization", "Hyperband"):
        _tuner = getattr(keras_tuner, _name)
        _init = getattr(_tuner.__init__, "unpatched", _tuner.__init__)

        def _quick_init(self, *args, _init=_init, **kwargs):
            if "max_trials" in kwargs:
                kwargs["max_trials"] = min(kwargs["max_trials"], QUICK_TRIALS)
            _init(self, *args, **kwargs)

        _quick_init.unpatched = _init
        _tuner.__init__ = _quick_init
