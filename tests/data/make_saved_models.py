"""Writes the `.keras` fixtures of `tests/test_saved_files.py`.

The files in this folder were written by this script before the command-line
runner moved into `keras_homeostasis.lab` (issue 8), and are kept as they are:
the test checks that files saved by earlier versions still load. Rerun it only
to add a fixture, under a new name:

    PYTHONPATH=. python tests/data/make_saved_models.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pathlib  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from keras_homeostasis import SynapticScalingCallback  # noqa: E402
from keras_homeostasis import WeightNormalization  # noqa: E402
from keras_homeostasis.layers import HomeostaticConv2D  # noqa: E402
from keras_homeostasis.layers import HomeostaticDense  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
FAST = dict(warmup=0, momentum=0.5, rate=0.5, max_step=0.1)
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def digits():
    d = load_digits()
    x = (d.images[:192, ..., None] / 16.0).astype("float32")
    return x, d.target[:192].astype("int32")


def homeostatic_layers_model():
    """HomeostaticConv2D and HomeostaticDense, their state trained."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            HomeostaticConv2D(4, 3, activation="relu", name="conv", **FAST),
            keras.layers.Flatten(name="flatten"),
            HomeostaticDense(8, activation="relu", name="dense", **FAST),
            keras.layers.Dense(10, name="output"),
        ],
        name="homeostatic_layers",
    )
    model.compile(keras.optimizers.Adam(1e-2), LOSS)
    return model, []


def callback_model():
    """Plain Dense layers (one weight-normalized) scaled by the callback."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(12, activation="relu", name="hidden_1")(x)
    x = WeightNormalization(
        keras.layers.Dense(8, activation="relu"), name="hidden_2_weightnorm"
    )(x)
    x = keras.layers.Dense(8, activation="relu", name="hidden_3")(x)
    outputs = keras.layers.Dense(10, name="output")(x)
    model = keras.Model(inputs, outputs, name="scaling_callback")
    model.compile(keras.optimizers.Adam(1e-2), LOSS)
    return model, [SynapticScalingCallback(layers=["hidden_1", "hidden_3"], **FAST)]


def main():
    x, y = digits()
    probe = x[:16]
    expected = {"x": probe}
    for name, build in [
        ("homeostatic_layers", homeostatic_layers_model),
        ("scaling_callback", callback_model),
    ]:
        model, callbacks = build()
        model.fit(
            x, y, epochs=2, batch_size=32, shuffle=False, verbose=0, callbacks=callbacks
        )
        model.save(HERE / f"{name}.keras")
        expected[name] = model.predict(probe, verbose=0)
    np.savez(HERE / "saved_models_expected.npz", **expected)


if __name__ == "__main__":
    main()
