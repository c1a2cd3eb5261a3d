"""Which layers of a model the scaling callback serves."""

import keras

ELIGIBLE_TYPES = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
)


def validate_selection(layers):
    """Checks a `layers=` argument: None, or a list of names and layer classes."""
    if layers is None:
        return None
    if isinstance(layers, (str, type)):
        layers = [layers]
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError(
            "Expected `layers` to be None or a non-empty list of layer names "
            f"or layer classes. Received: layers={layers!r}"
        )
    for item in layers:
        is_class = isinstance(item, type) and issubclass(item, keras.layers.Layer)
        if not (isinstance(item, str) or is_class):
            raise TypeError(
                "Expected every entry of `layers` to be a layer name or a layer "
                f"class. Received: layers={layers!r} with entry {item!r}"
            )
    return list(layers)


def all_layers(model):
    """Every layer of `model`, nested models included, in model order."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found.extend(all_layers(layer))
    return found


def output_layers(model):
    """Layers whose output is one of the model's outputs (not hidden units)."""
    outputs = getattr(model, "outputs", None) or []
    ids = {id(t) for t in outputs}
    found = []
    for layer in all_layers(model):
        try:
            if id(layer.output) in ids:
                found.append(layer)
        except (AttributeError, ValueError):
            continue
    if not found and model.layers:
        found.append(model.layers[-1])
    return found


def is_homeostatic(layer):
    """A layer that scales itself (a `keras_homeostasis.layers` layer).

    Told by the class property `homeostasis_settings` of `HomeostaticMixin`,
    so that this module does not import the layers, which import it.
    """
    return hasattr(type(layer), "homeostasis_settings")


def is_scalable(layer):
    """A standard Dense/Conv layer with a kernel, not already homeostatic."""
    return (
        isinstance(layer, ELIGIBLE_TYPES)
        and not is_homeostatic(layer)
        and getattr(layer, "kernel", None) is not None
    )


def select_layers(model, selection):
    """The layers to scale; raises `ValueError` when there are none."""
    candidates = [x for x in all_layers(model) if is_scalable(x) and x.trainable]
    excluded = {id(x) for x in output_layers(model)}
    hidden = [x for x in candidates if id(x) not in excluded]
    if selection is None:
        chosen = hidden
    else:
        # A class selects among the hidden layers; only a name selects an output.
        names = {x for x in selection if isinstance(x, str)}
        types = tuple(x for x in selection if isinstance(x, type))
        chosen = [
            x
            for x in candidates
            if x.name in names or (isinstance(x, types) and id(x) not in excluded)
        ]
        missing = names - {x.name for x in chosen}
        if missing:
            raise ValueError(
                f"`layers` names {sorted(missing)}, which are not trainable Dense "
                f"or Conv layers of model '{model.name}'. Scalable layers: "
                f"{[x.name for x in candidates]}"
            )
    if not chosen:
        raise ValueError(
            f"Model '{model.name}' has no layer that SynapticScalingCallback can "
            "scale: it needs a trainable, built Dense, Conv1D, Conv2D or Conv3D "
            "hidden layer (output layers are skipped unless named in `layers`). "
            f"Layers: {[x.name for x in model.layers]}"
        )
    return chosen


def unit_axis(layer):
    """Axis of a layer's output holding its units."""
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return 1
    return -1
