"""keras_homeostasis: homeostatic synaptic scaling for Keras 3."""

from keras_homeostasis import layers
from keras_homeostasis import metrics
from keras_homeostasis.synaptic_scaling_callback import SynapticScalingCallback
from keras_homeostasis.unit_state import UnitState
from keras_homeostasis.version import __version__
from keras_homeostasis.weight_normalization import WeightNormalization

__all__ = [
    "SynapticScalingCallback",
    "UnitState",
    "WeightNormalization",
    "layers",
    "metrics",
    "__version__",
]


def __getattr__(name):
    # `kh.tuning` without importing it (and keras-tuner) on `import keras_homeostasis`.
    if name in ("tuning", "tensorboard"):
        import importlib

        return importlib.import_module(f"keras_homeostasis.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
