"""The callback's `hold_norms=True`: the rule owns each unit's kernel norm.

A scale-invariant homeostatic layer computes with each unit's direction
times a gain the rule sets, so the optimizer cannot change a unit's scale.
A plain layer gets the same between steps: after every optimizer step its
kernel is put back, unit by unit, to the norm `exp(log_gain)` that the
rule holds (`rule.relaxed_directions` with a relaxation of 1), so the
optimizer's step only turns each unit's incoming weights and the rule's
factors alone change their length. `log_gain` starts at the log of each
unit's initial norm, so the first step starts from the layer as built.
"""

from keras_homeostasis import layer_selection
from keras_homeostasis.settings import refuse_gain_bounds
from keras_homeostasis.unit_state import initial_log_norms
from keras_homeostasis.validation import validate_flag

# A unit's norm is put all the way back to its gain after every step.
FULL_RELAXATION = 1.0


def validate(value, settings):
    """`value` as a flag; a ValueError naming the gain bounds, which act on
    cumulative factors, when it is True and they are set."""
    value = validate_flag("hold_norms", value)
    if value:
        refuse_gain_bounds("hold_norms", settings)
    return value


def initial_log_gain(layer):
    """The log of each unit's kernel norm in `layer`, where its held norm
    starts; a ValueError naming the layer when its units are not on the
    kernel's last axis (a transposed convolution)."""
    if layer_selection.kernel_unit_axis(layer) != -1:
        raise ValueError(
            "`hold_norms=True` holds the norms of kernels with their units on "
            f"the last axis; layer {layer.name!r} is a {type(layer).__name__}. "
            "Exclude it (`exclude=`) or leave hold_norms False."
        )
    return initial_log_norms(layer.kernel)


def hold(state):
    """Makes `state`'s kernel constraint hold the norms: the rule's factors
    go to `log_gain`, and the kernel is put back to `exp(log_gain)`."""
    state.scales_kernel = False
    state.norm_relaxation = FULL_RELAXATION
