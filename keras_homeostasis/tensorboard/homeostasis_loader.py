"""`HomeostasisLoader`: how TensorBoard discovers and configures the plugin."""

from tensorboard.plugins import base_plugin

from keras_homeostasis.tensorboard import metadata
from keras_homeostasis.tensorboard.homeostasis_plugin import DEFAULT_SAMPLES
from keras_homeostasis.tensorboard.homeostasis_plugin import HomeostasisPlugin


class HomeostasisLoader(base_plugin.TBLoader):
    """Loads `HomeostasisPlugin`; named by the `tensorboard_plugins` entry point.

    TensorBoard keeps only 10 samples per tag of a third-party plugin unless
    told otherwise. Before the data are loaded, this loader raises that to
    `DEFAULT_SAMPLES` logged steps per layer, unless the user chose a number
    with `--samples_per_plugin homeostasis=N` (0 keeps every step).
    """

    def fix_flags(self, flags):
        samples = getattr(flags, "samples_per_plugin", None)
        if isinstance(samples, dict):
            samples.setdefault(metadata.PLUGIN_NAME, DEFAULT_SAMPLES)

    def load(self, context):
        return HomeostasisPlugin(context)
