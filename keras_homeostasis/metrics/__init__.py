"""Load-balancing metrics of a model's hidden layers."""

from keras_homeostasis.metrics.usage import coefficient_of_variation
from keras_homeostasis.metrics.usage import dead_fraction
from keras_homeostasis.metrics.usage import gini
from keras_homeostasis.metrics.usage import layer_statistics
from keras_homeostasis.metrics.usage import sorted_activity
from keras_homeostasis.metrics.usage import unit_statistics
from keras_homeostasis.metrics.usage import usage_entropy
from keras_homeostasis.metrics.usage_report import UsageReport

__all__ = [
    "UsageReport",
    "coefficient_of_variation",
    "dead_fraction",
    "gini",
    "layer_statistics",
    "sorted_activity",
    "unit_statistics",
    "usage_entropy",
]
