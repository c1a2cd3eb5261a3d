"""What the tutorials share: run settings, the digits data and a small MLP.

Each tutorial imports it (`from tutorial_setup import ...`); a script finds it
beside itself, a notebook opened in this folder too. Not a tutorial itself:
`render.py` leaves it out.

- `KH_TUTORIAL_SMALL=1` (`SMALL`) shrinks every tutorial to a few seconds;
- `KH_TUTORIAL_OUT` (`OUT`, default `runs/tutorials`) is where they write.
"""

import os

import keras

from keras_homeostasis.lab.data import load_dataset

SMALL = os.environ.get("KH_TUTORIAL_SMALL") == "1"
OUT = os.environ.get("KH_TUTORIAL_OUT", os.path.join("runs", "tutorials"))
HIDDEN = ("hidden_1", "hidden_2")


def load_digits():
    """scikit-learn's 8x8 digits in [0, 1]: `(x_train, y_train), (x_test, y_test)`.

    They come with scikit-learn (nothing downloaded): 1437 training and 360
    test images.
    """
    return load_dataset("digits")


def build_mlp(input_shape, width, optimizer, batchnorm=False, seed=None):
    """A compiled classifier: two hidden ReLU blocks, then 10 softmax outputs.

    The post-ReLU output of block k is the layer `hidden_<k>`: a
    `Dense(width, activation="relu")`, or with `batchnorm=True` a bias-free
    `Dense` (`hidden_<k>_linear`), a `BatchNormalization` (`hidden_<k>_norm`)
    and a ReLU. The output layer is `output`. `seed`, if given, seeds Keras
    first, so two builds start from the same weights.
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    layers = [keras.Input(input_shape), keras.layers.Flatten()]
    for name in HIDDEN:
        if batchnorm:
            layers += [
                keras.layers.Dense(width, use_bias=False, name=f"{name}_linear"),
                keras.layers.BatchNormalization(name=f"{name}_norm"),
                keras.layers.Activation("relu", name=name),
            ]
        else:
            layers.append(keras.layers.Dense(width, activation="relu", name=name))
    layers.append(keras.layers.Dense(10, activation="softmax", name="output"))
    model = keras.Sequential(layers)
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
