"""TensorBoard support: summaries, a logging callback and the Homeostasis plugin.

`tensorboard --logdir runs` shows a "Homeostasis" tab for runs written by
`HomeostasisLogger` or `SynapticScalingCallback(log_dir=...)`; the plugin
itself (`homeostasis_plugin`) is loaded by TensorBoard through the
`tensorboard_plugins` entry point and is not imported here.
"""

from keras_homeostasis.tensorboard import summary
from keras_homeostasis.tensorboard.homeostasis_logger import HomeostasisLogger

__all__ = ["HomeostasisLogger", "summary"]
