"""Which of the callback's options each scaled layer takes.

`center_inputs=True` needs a Dense or Conv layer with a bias to hold its
units' offsets with (`input_centering.refusal`); `hold_norms=True` a kernel
with its units on the last axis, read through Keras' `_kernel`
(`held_norms.refusal`). Real models hold layers that cannot take them: a
convolution without a bias before a normalization, a transposed
convolution in a decoder. Where the callback picked the layers itself
(`layers=None`), such a layer is scaled without the option it cannot take,
and one warning names it with the reason; the other layers take every
option asked for. A layer the user named in `layers=` is refused with the
reason instead: asked for by name, it should not quietly do less.
"""

import collections
import warnings

from keras_homeostasis import held_norms
from keras_homeostasis import input_centering

# The options one scaled layer takes.
Mode = collections.namedtuple("Mode", ["centered", "held"])


def layer_modes(model, layers, center_inputs, hold_norms, named):
    """Each of `layers`' `Mode`, in order.

    `named`: the layers were named in `layers=` (a ValueError for a layer
    that cannot take an option asked for); otherwise such a layer goes
    without it, with a warning naming the layers and the reasons.
    """
    modes, fallbacks = [], []
    for layer in layers:
        centered = center_inputs and _takes(
            input_centering.refusal(layer), named, "center_inputs", fallbacks
        )
        held = hold_norms and _takes(
            held_norms.refusal(layer), named, "hold_norms", fallbacks
        )
        modes.append(Mode(centered, held))
    if fallbacks:
        warnings.warn(
            f"SynapticScalingCallback on model '{model.name}' scales some "
            "layers without an option they cannot take (pass `exclude=` to "
            f"leave them unscaled): {'; '.join(fallbacks)}.",
            stacklevel=4,
        )
    return modes


def _takes(reason, named, option, fallbacks):
    if reason is None:
        return True
    if named:
        raise ValueError(f"{reason}. Exclude it (`exclude=`), or leave {option} False.")
    fallbacks.append(f"{reason}, so it is scaled without it")
    return False
