"""The public names are exactly the documented ones, each registered with Keras."""

import inspect

import keras
import pytest

import keras_homeostasis
from keras_homeostasis import layers
from keras_homeostasis import metrics

DOCUMENTED = {
    keras_homeostasis: {
        "SynapticScalingCallback",
        "UnitState",
        "WeightNormalization",
        "layers",
        "metrics",
        "__version__",
    },
    layers: {
        "HomeostaticConv1D",
        "HomeostaticConv2D",
        "HomeostaticConv3D",
        "HomeostaticDense",
    },
    metrics: {
        "UsageReport",
        "coefficient_of_variation",
        "dead_fraction",
        "gini",
        "layer_statistics",
        "sorted_activity",
        "unit_statistics",
        "usage_entropy",
    },
}


def public_classes():
    found = []
    for module in DOCUMENTED:
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value):
                found.append(value)
    return found


@pytest.mark.parametrize("module", list(DOCUMENTED), ids=lambda m: m.__name__)
def test_exported_names_are_exactly_the_documented_ones(module):
    assert set(module.__all__) == DOCUMENTED[module]
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        assert getattr(module, name) is not None
    namespace = {}
    exec(f"from {module.__name__} import *", namespace)
    assert set(namespace) - {"__builtins__"} == DOCUMENTED[module]


def test_the_version_is_the_packaged_one():
    from importlib.metadata import version

    assert keras_homeostasis.__version__ == version("keras-homeostasis")


@pytest.mark.parametrize("cls", public_classes(), ids=lambda c: c.__name__)
def test_every_public_keras_class_is_registered_under_the_package(cls):
    if not issubclass(cls, (keras.layers.Layer, keras.callbacks.Callback)):
        pytest.skip(f"{cls.__name__} is a plain Python report, not a Keras object")
    name = f"keras_homeostasis>{cls.__name__}"
    assert keras.saving.get_registered_name(cls) == name
    assert keras.saving.get_registered_object(name) is cls
