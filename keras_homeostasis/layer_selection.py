"""Which layers of a model the scaling callback serves."""

import warnings

import keras

# Transposed convolutions hold their units on the kernel's axis -2.
TRANSPOSED_TYPES = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
ELIGIBLE_TYPES = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    *TRANSPOSED_TYPES,
)
SCALED_KINDS = (
    "a Dense, EinsumDense (units on its kernel's last axis), Conv1D/2D/3D or "
    "Conv1D/2D/3DTranspose layer"
)


def validate_selection(layers, argument="layers"):
    """Checks a `layers=` / `exclude=` argument: None, or names and layer classes."""
    if layers is None:
        return None
    if isinstance(layers, (str, type, dict)):
        layers = [layers]
    if isinstance(layers, (list, tuple)):
        layers = [_layer_class(x) if isinstance(x, dict) else x for x in layers]
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError(
            f"Expected `{argument}` to be None or a non-empty list of layer names "
            f"or layer classes. Received: {argument}={layers!r}"
        )
    for item in layers:
        is_class = isinstance(item, type) and issubclass(item, keras.layers.Layer)
        if not (isinstance(item, str) or is_class):
            raise TypeError(
                f"Expected every entry of `{argument}` to be a layer name or a "
                f"layer class. Received: {argument}={layers!r} with entry {item!r}"
            )
    return list(layers)


def selection_config(layers):
    """A `layers=` / `exclude=` value as JSON: classes by their registered name."""
    if layers is None:
        return None
    return [
        {"layer_class": keras.saving.get_registered_name(x)}
        if isinstance(x, type)
        else x
        for x in layers
    ]


def _layer_class(entry):
    name = entry.get("layer_class")
    cls = keras.saving.get_registered_object(name) if isinstance(name, str) else None
    if cls is None and isinstance(name, str):
        cls = getattr(keras.layers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
        raise ValueError(
            "Expected a layer class entry like {'layer_class': 'Dense'}, naming "
            f"a Keras layer or a registered custom layer. Received: {entry!r}"
        )
    return cls


def all_layers(model):
    """Every layer of `model`, nested models and wrapped layers included."""
    found = []
    for layer in model.layers:
        found.append(layer)
        found.extend(all_layers_within(layer))
    return found


def all_layers_within(layer):
    """The layers inside a model or a `TimeDistributed` wrapper, or [].

    A `Bidirectional` is one refused layer: the recurrent layers it wraps
    are never scaled.
    """
    if hasattr(layer, "layers"):
        return all_layers(layer)
    if isinstance(layer, keras.layers.TimeDistributed):
        return [layer.layer, *all_layers_within(layer.layer)]
    return []


def output_layers(model):
    """Layers with weights that a model output depends on through weightless steps.

    A Dense followed by `Softmax`, `Activation`, `Reshape`, `Dropout`, a cast
    or any other parameter-free layer or op is an output layer. Found by
    tracing the model once in a `tf.function` and walking its graph back
    from the outputs to the nearest layers with weights, so it works alike
    for Sequential, functional, nested and subclassed models. Raises
    `ValueError` when the model cannot be traced.
    """
    import tensorflow as tf

    produced = {}
    leaves = [x for x in all_layers(model) if x.weights and not all_layers_within(x)]
    saved = [(x, vars(x).get("call")) for x in leaves]
    for layer in leaves:
        object.__setattr__(layer, "call", _recording(layer, produced))
    try:
        specs = _input_specs(model)
        traced = tf.function(lambda inputs: model(inputs, training=False))
        outputs = tf.nest.flatten(traced.get_concrete_function(specs).outputs)
    except Exception as error:
        raise ValueError(
            f"Could not find the output layers of model '{model.name}' (the "
            "model's graph could not be traced: "
            f"{type(error).__name__}: {error}). Name the layers instead: "
            "`layers=` (the layers to scale or log) or, to "
            "SynapticScalingCallback, `exclude=` (the layers to leave alone)."
        ) from error
    finally:
        for layer, call in saved:
            object.__delattr__(layer, "call")
            if call is not None:
                object.__setattr__(layer, "call", call)
    return _walk_back(outputs, produced)


def _recording(layer, produced):
    original = layer.call

    def call(*args, **kwargs):
        outputs = original(*args, **kwargs)
        for tensor in keras.tree.flatten(outputs):
            if hasattr(tensor, "ref"):
                produced.setdefault(tensor.ref(), layer)
        return outputs

    return call


def _walk_back(outputs, produced):
    found, seen, todo = [], set(), list(outputs)
    while todo:
        tensor = todo.pop()
        layer = produced.get(tensor.ref())
        if layer is not None:
            if all(layer is not x for x in found):
                found.append(layer)
            continue
        if tensor.op.name not in seen:
            seen.add(tensor.op.name)
            todo.extend(tensor.op.inputs)
    return found


def _input_specs(model):
    import tensorflow as tf

    inputs = getattr(model, "inputs", None) or None
    if inputs is not None:
        # A Sequential model has no `input` structure until called: one input.
        inputs = inputs[0] if len(inputs) == 1 else model.input
        return keras.tree.map_structure(
            lambda t: tf.TensorSpec(t.shape, t.dtype), inputs
        )
    shape = (model.get_build_config() or {}).get("input_shape")
    if shape is None:
        raise ValueError("its input shape is unknown (build it on one input)")
    return keras.tree.map_shape_structure(lambda s: tf.TensorSpec(s, "float32"), shape)


def is_homeostatic(layer):
    """A layer that scales itself (a `keras_homeostasis.layers` layer).

    Told by the class property `homeostasis_settings` of `HomeostaticMixin`,
    so that this module does not import the layers, which import it.
    """
    return hasattr(type(layer), "homeostasis_settings")


def unsupported_reason(layer):
    """Why the callback cannot scale `layer` (a sentence), or None if it can."""
    if is_homeostatic(layer):
        return "it is a keras_homeostasis layer, which scales itself"
    reason = refusal(layer)
    if reason:
        return reason
    if not isinstance(layer, ELIGIBLE_TYPES):
        return f"it is not {SCALED_KINDS}"
    if not layer.built or getattr(layer, "kernel", None) is None:
        return "it is not built (it has no kernel yet)"
    if not layer.trainable:
        return "it is not trainable"
    return None


def refusal(layer):
    """Why a layer of a kind the callback refuses cannot be scaled, or None."""
    if getattr(layer, "lora_enabled", False):
        return (
            "LoRA is enabled: its kernel is a frozen matrix plus trainable "
            "low-rank factors, which cannot be rescaled per unit"
        )
    if getattr(layer, "quantization_mode", None):
        return (
            f"its kernel is quantized ({layer.quantization_mode}): the "
            "integer kernel is not updated by the optimizer"
        )
    for types, reason in UNSUPPORTED:
        if isinstance(layer, types):
            return reason
    if isinstance(layer, keras.layers.EinsumDense):
        return _einsum_refusal(layer)
    return None


def _einsum_refusal(layer):
    """Why an EinsumDense has no clear unit axis, or None when it has one.

    Its units are clear when the kernel's last index is the output's last
    one and every other kernel index is summed over (as in "ab,bc->ac" or
    "abc,cd->abd"): each output unit then has its own incoming weights,
    `kernel[..., i]`. Its bias, if any, must be on that axis alone.
    """
    inputs, output = layer.equation.replace(" ", "").split("->")
    kernel = inputs.split(",")[-1]
    unit = kernel[-1:]
    clear = (
        "." not in layer.equation
        and unit == output[-1:]
        and unit not in inputs.split(",")[0]
        and not set(kernel[:-1]) & set(output)
        and layer.bias_axes in (None, unit)
    )
    if clear:
        return None
    return (
        f"its equation '{layer.equation}' (bias_axes={layer.bias_axes!r}) has "
        "no single unit axis: the kernel's last index must be the output's "
        "last one and its other indices summed over (e.g. 'abc,cd->abd')"
    )


UNSUPPORTED = (
    (
        keras.layers.RNN,
        "recurrent kernels: a unit's drive mixes input and recurrent weights "
        "across time steps and gates",
    ),
    (
        keras.layers.Bidirectional,
        "it wraps recurrent layers (recurrent kernels: a unit's drive mixes "
        "input and recurrent weights across time steps and gates)",
    ),
    (
        keras.layers.TimeDistributed,
        "a wrapper is not scaled itself: the layer it wraps is (name that one)",
    ),
    (
        (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D),
        "a depthwise kernel's last axis is the depth multiplier, not its units",
    ),
    (
        (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D),
        "a separable convolution has two kernels (depthwise and pointwise)",
    ),
)


def is_measurable(layer):
    """A layer whose units' usage can be measured (a kind with a unit axis)."""
    if isinstance(layer, keras.layers.EinsumDense) and _einsum_refusal(layer):
        return False
    return isinstance(layer, ELIGIBLE_TYPES)


def is_scalable(layer):
    """A trainable, built layer of a kind the callback can scale."""
    return unsupported_reason(layer) is None


def select_layers(model, selection, exclude=None):
    """The layers to scale; raises `ValueError` when there are none.

    By default every scalable layer except the model's output layers (see
    `output_layers`); `selection` names layers or classes to scale instead,
    `exclude` layers or classes to leave alone.
    """
    everything = all_layers(model)
    candidates = [x for x in everything if is_scalable(x)]
    _check_names(model, everything, selection, "layers")
    _check_names(model, everything, exclude, "exclude")
    names = {x for x in selection or () if isinstance(x, str)}
    if selection is not None and not (set(selection) - names):
        chosen = [x for x in candidates if x.name in names]  # names only
    else:
        chosen = _default_or_classes(model, candidates, selection, exclude)
    if exclude is not None:
        skip_names = {x for x in exclude if isinstance(x, str)}
        skip_types = tuple(x for x in exclude if isinstance(x, type))
        chosen = [
            x
            for x in chosen
            if x.name not in skip_names and not isinstance(x, skip_types)
        ]
    if not chosen:
        raise ValueError(
            f"Model '{model.name}' has no layer that SynapticScalingCallback can "
            f"scale: it needs a trainable, built hidden layer that is {SCALED_KINDS} "
            "(output layers are skipped unless named in `layers`). "
            f"Layers: {[x.name for x in model.layers]}{_refused(everything)}"
        )
    if selection is None:
        _warn_skipped(model, everything, chosen)
    return chosen


def _refused(everything):
    refused = [f"'{x.name}': {r}" for x in everything if (r := refusal(x))]
    return f"; refused: {'; '.join(refused)}" if refused else ""


def _default_or_classes(model, candidates, selection, exclude):
    try:
        outputs = {id(x) for x in output_layers(model)}
    except ValueError:
        if exclude is None:
            raise
        outputs = set()  # the user's `exclude=` stands for the output layers
    if selection is None:
        return [x for x in candidates if id(x) not in outputs]
    # A class selects among the hidden layers; only a name selects an output.
    names = {x for x in selection if isinstance(x, str)}
    types = tuple(x for x in selection if isinstance(x, type))
    return [
        x
        for x in candidates
        if x.name in names or (isinstance(x, types) and id(x) not in outputs)
    ]


def _check_names(model, everything, selection, argument):
    by_name = {x.name: x for x in everything}
    problems, named = [], []
    for item in selection or ():
        if isinstance(item, str) and item not in by_name:
            problems.append(f"'{item}': no such layer")
            named.append(item)
        elif isinstance(item, str) and argument == "layers":
            reason = unsupported_reason(by_name[item])
            if reason:
                problems.append(f"'{item}': {reason}")
                named.append(item)
        elif isinstance(item, type) and argument == "layers":
            for layer in everything:
                reason = isinstance(layer, item) and refusal(layer)
                if reason:
                    problems.append(f"'{layer.name}' ({item.__name__}): {reason}")
                    named.append(layer.name)
    if problems:
        raise ValueError(
            f"`{argument}` names {named}, which SynapticScalingCallback cannot "
            f"scale in model '{model.name}': {'; '.join(problems)}. "
            f"Scalable layers: {[x.name for x in everything if is_scalable(x)]}"
        )


def _warn_skipped(model, everything, chosen):
    # A TimeDistributed is not skipped: the layer inside it is what counts.
    skipped = [
        f"'{x.name}' ({reason})"
        for x in everything
        if (reason := refusal(x)) and not isinstance(x, keras.layers.TimeDistributed)
    ]
    if skipped:
        warnings.warn(
            f"SynapticScalingCallback on model '{model.name}' scales "
            f"{[x.name for x in chosen]} and skips {'; '.join(skipped)}.",
            stacklevel=4,
        )


def unit_axis(layer):
    """Axis of a layer's output holding its units."""
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return 1
    return -1


def kernel_unit_axis(layer):
    """Axis of a layer's kernel holding its units (-2 for transposed convs)."""
    return -2 if isinstance(layer, TRANSPOSED_TYPES) else -1


def unit_count(layer):
    """Number of units (Dense units, filters) of a scalable layer."""
    return int(layer.kernel.shape[kernel_unit_axis(layer)])
