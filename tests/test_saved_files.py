"""`.keras` files saved by earlier versions still load and predict the same.

The fixtures in `tests/data/` were written by `tests/data/make_saved_models.py`
before the command-line runner moved into `keras_homeostasis.lab`: a model of
homeostatic layers, and a plain model (one layer weight-normalized) trained
with `SynapticScalingCallback`. They load through the registered names
`keras_homeostasis>ClassName`, with no `custom_objects`. They were saved by
Keras 3.15, and Keras does not load files written by a newer Keras (their
layer configs carry arguments it does not know), so under an older Keras the
loading tests skip.
"""

import json
import pathlib
import zipfile

import keras
import numpy as np
import pytest

import keras_homeostasis
from keras_homeostasis import layers

DATA = pathlib.Path(__file__).resolve().parent / "data"
FIXTURES = ("homeostatic_layers", "scaling_callback")


def release(version):
    return tuple(int(part) for part in version.split(".")[:2])


def saved_by(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("metadata.json"))["keras_version"]


SAVED_BY = max((saved_by(DATA / f"{name}.keras") for name in FIXTURES), key=release)
loads_them = pytest.mark.skipif(
    release(keras.__version__) < release(SAVED_BY),
    reason=f"the fixtures were saved by Keras {SAVED_BY}, newer than this Keras",
)


def registered_names(path):
    """Every `registered_name` in the config of the `.keras` file at `path`."""
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("registered_name"), str):
                found.add(node["registered_name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


@loads_them
@pytest.mark.parametrize("name", FIXTURES)
def test_saved_file_loads_and_predicts_as_saved(name):
    expected = np.load(DATA / "saved_models_expected.npz")
    model = keras.saving.load_model(DATA / f"{name}.keras")
    outputs = model.predict(expected["x"], verbose=0)
    np.testing.assert_allclose(outputs, expected[name], rtol=1e-5, atol=1e-6)


@loads_them
def test_homeostatic_layers_load_with_their_state():
    model = keras.saving.load_model(DATA / "homeostatic_layers.keras")
    assert isinstance(model.get_layer("conv"), layers.HomeostaticConv2D)
    assert isinstance(model.get_layer("dense"), layers.HomeostaticDense)
    for layer in (model.get_layer("conv"), model.get_layer("dense")):
        state = layer.homeostasis
        # The first release's traces measured other statistics: its gains
        # load, its traces restart (steps 0, a new warm-up).
        assert np.any(state.log_gain.numpy() != 0.0)
        assert int(state.steps.numpy()) == 0
        assert np.all(state.drive_square.numpy() == 0.0)


def test_fixtures_use_the_registered_names_of_today():
    saved = registered_names(DATA / "homeostatic_layers.keras") | registered_names(
        DATA / "scaling_callback.keras"
    )
    classes = [
        layers.HomeostaticConv2D,
        layers.HomeostaticDense,
        keras_homeostasis.WeightNormalization,
    ]
    for cls in classes:
        name = keras.saving.get_registered_name(cls)
        assert name == f"keras_homeostasis>{cls.__name__}"
        assert name in saved
