"""Tiny data and a tiny model-building function for the keras-tuner tests."""

import functools

import keras

from keras_homeostasis.lab.data import load_dataset


@functools.lru_cache(maxsize=None)
def digits_data():
    return load_dataset("digits")


def small_digits():
    """`(x, y), (x_val, y_val)`: 128 training and 64 validation digits."""
    (x, y), (x_val, y_val) = digits_data()
    return (x[:128], y[:128]), (x_val[:64], y_val[:64])


def tiny_model(hp=None, learning_rate=1e-2, name="tiny"):
    """Flatten-Dense(16)-Dense(16)-softmax on 8x8 digits, compiled."""
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu", name="hidden_1"),
            keras.layers.Dense(16, activation="relu", name="hidden_2"),
            keras.layers.Dense(10, activation="softmax", name="output"),
        ],
        name=name,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
