"""Drop-in Keras layers with built-in homeostatic synaptic scaling."""

from keras_homeostasis.layers.homeostatic_conv1d import HomeostaticConv1D
from keras_homeostasis.layers.homeostatic_conv2d import HomeostaticConv2D
from keras_homeostasis.layers.homeostatic_conv3d import HomeostaticConv3D
from keras_homeostasis.layers.homeostatic_dense import HomeostaticDense

__all__ = [
    "HomeostaticConv1D",
    "HomeostaticConv2D",
    "HomeostaticConv3D",
    "HomeostaticDense",
]
