"""Tuning the homeostatic hyper-parameters with keras-tuner.

`HomeostaticHyperModel` wraps a `build_model(hp)` function and adds the
search space of `SynapticScalingCallback`'s settings; `UsageEntropyCallback`
writes the usage-entropy objective into the logs. A search from a YAML config
(`keras-homeostasis tune CONFIG`) is the lab's job, `keras_homeostasis.lab.tune`.

keras-tuner is imported on first use of `HomeostaticHyperModel` or
`homeostasis_objective`, so `search_space` (used to validate configs) works
without it.
"""

import importlib

from keras_homeostasis.tuning.usage_entropy_callback import ENTROPY_KEY
from keras_homeostasis.tuning.usage_entropy_callback import SCORE_KEY
from keras_homeostasis.tuning.usage_entropy_callback import UsageEntropyCallback

_LAZY = {
    "HomeostaticHyperModel": "keras_homeostasis.tuning.homeostatic_hyper_model",
    "homeostasis_objective": "keras_homeostasis.tuning.homeostatic_hyper_model",
}

__all__ = [
    "ENTROPY_KEY",
    "HomeostaticHyperModel",
    "SCORE_KEY",
    "UsageEntropyCallback",
    "homeostasis_objective",
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
