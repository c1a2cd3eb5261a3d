"""The sensor: a layer's forward pass, with its pre-activation counted.

The rule senses each unit's pre-activation `z` (as BatchNormalization does)
and its output `y`. Dense and Conv layers apply their `activation` to `z`
inside `call`; for the one call being sensed, the activation is wrapped so
that `z` is seen on its way through, then put back.
"""


def sensed_call(layer, forward, state, unit_axis, bias=None, through=None):
    """Runs `forward()` (the layer's call) and adds its statistics to `state`.

    `bias` is what the drive is measured from (default: the layer's bias).
    `through`, when given, is applied to the pre-activation on its way to
    the activation (the callback's centered gradient: same values).
    """
    bias = _bias(layer) if bias is None else bias
    through = through or (lambda z: z)
    activation = getattr(layer, "activation", None)
    if activation is None:
        outputs = through(forward())
        state.accumulate(outputs, outputs, bias, unit_axis)
        return outputs
    seen = []

    def observed(z):
        z = through(z)
        seen.append(z)
        return activation(z)

    object.__setattr__(layer, "activation", observed)
    try:
        outputs = forward()
    finally:
        object.__setattr__(layer, "activation", activation)
    preactivation = seen[-1] if seen else outputs
    state.accumulate(preactivation, outputs, bias, unit_axis)
    return outputs


def _bias(layer):
    return getattr(layer, "bias", None)
