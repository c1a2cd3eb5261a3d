"""The search space of the homeostatic hyper-parameters, for keras-tuner.

A search space maps each parameter name to one of:

- `None`: not searched; the value comes from the base settings (the
  `scaling` section of a config, or the hypermodel's `settings`);
- a scalar: fixed to that value (recorded as a `Fixed` hyper-parameter);
- a list: a choice among these values;
- a mapping `{"min": a, "max": b, "sampling": "log", "step": s}`: a range
  (`sampling` is `linear`, `log` or `reverse_log`, default `linear`;
  `step` is optional). Only numeric parameters take a range.

The parameters are the settings of `SynapticScalingCallback` (`rate`,
`bias_rate`, `momentum`, `max_step`, `min_gain`, `max_gain`, `period`,
`warmup`, `target_std`, `anchor`, `silence_evidence`, `max_offset`), the
tuned set point `target_rate` (the fraction of inputs on which a unit fires,
in (0, 1)) and two that shape it:

- `target_mode`: `"absolute"` (each unit's firing-rate set point is
  `target_rate`, its drive's spread set point the `target_std` of the base
  settings or of the search) or `"layer_mean"` (pure load balancing: both
  set points are the layer's own means, i.e. `target_rate=None` and
  `target_std=None`; `target_std` and `anchor` are then not searched);
- `per_layer_targets`: with an absolute set point, whether every scaled
  layer gets its own `target_rate` (`scaling/layer_targets/<layer>`) or all
  share one (`scaling/target_rate`).

Four more shape the layers, and are not searched unless named:
`scale_invariant` shapes homeostatic layers only (`HomeostaticHyperModel(...,
homeostatic_layers=True)`), `hold_norms` the callback's plain layers only,
and the other two both:

- `scale_invariant`: whether the layers compute with each unit's kernel
  direction times its homeostatic gain (`HomeostaticDense(...,
  scale_invariant=True)`);
- `norm_relaxation`: how fast those layers (or the callback with
  `hold_norms=True`) pull each direction vector's norm back to its gain, in
  [0, 1]; searched while `scale_invariant` (or, when the space names it,
  `hold_norms`) is true only;
- `center_inputs`: whether the layers subtract a trace of their input
  mean (`HomeostaticDense(..., center_inputs=True)`), or, for the
  callback, whether it holds plain layers' offsets at it
  (`SynapticScalingCallback(center_inputs=True)`);
- `hold_norms` (the callback only): whether the rule alone sets each
  unit's kernel norm (`SynapticScalingCallback(hold_norms=True)`); not with
  `min_gain` or `max_gain`, and refused for homeostatic layers, whose
  `scale_invariant` gives them that.

`min_gain`, `max_gain`, `target_std`, `target_rate`, `silence_evidence` and
`max_offset` also take `None` as a setting (unbounded, the layer's mean, or
off); as a search-space entry `None` means "not searched" (the base setting,
which may itself be `None`), so it cannot be one of the values of a list or
range.

Hyper-parameter names are prefixed with `scaling/`, so `scaling/rate` is the
config key `scaling.rate`. This module does not import keras-tuner: configs
validate their `tune.search_space` with it.
"""

import copy
import numbers

from keras_homeostasis.settings import DEFAULTS
from keras_homeostasis.settings import in_range
from keras_homeostasis.settings import validate_settings
from keras_homeostasis.validation import check_known_keys

PREFIX = "scaling/"
LAYER_TARGETS = "layer_targets"
TARGET_MODES = ("absolute", "layer_mean")
SAMPLINGS = ("linear", "log", "reverse_log")
RANGE_KEYS = ("min", "max", "sampling", "step")
INTEGER_PARAMETERS = ("period", "warmup")
BOOLEAN_PARAMETERS = (
    "per_layer_targets",
    "scale_invariant",
    "center_inputs",
    "hold_norms",
)
# Settings searched by default, in the order they are registered.
SETTING_PARAMETERS = (
    "rate",
    "bias_rate",
    "momentum",
    "max_step",
    "min_gain",
    "max_gain",
    "period",
    "warmup",
    "target_std",
    "anchor",
    "silence_evidence",
    "max_offset",
)
# Settings that only act with an absolute set point: registered under
# `target_mode == "absolute"` when the mode is searched.
ABSOLUTE_PARAMETERS = ("target_std", "anchor")
# Arguments of the homeostatic layers or the callback that are not settings
# of the rule.
LAYER_PARAMETERS = ("scale_invariant", "norm_relaxation", "center_inputs", "hold_norms")
# What each takes when not searched: the callback's options are its own
# (`SynapticScalingCallback()` centers and holds; a hypermodel's
# `callback_options` may say otherwise), the layers' are False.
LAYER_DEFAULTS = {
    "scale_invariant": False,
    "norm_relaxation": 0.0,
    "center_inputs": "the callback's setting; False for the layers",
    "hold_norms": "the callback's setting",
}
PARAMETERS = (
    SETTING_PARAMETERS
    + ("target_mode", "per_layer_targets", "target_rate")
    + LAYER_PARAMETERS
)

# Ranges around the rule's defaults (`keras_homeostasis.settings.DEFAULTS`):
# the rates from 0.01 to 0.5 (the default is 0.03), the trace's horizon an
# order of magnitude each side, the firing-rate set point a band around 0.5
# (half of the inputs fire a unit), and how fast a layer moves to its set
# points from 0.001 (slow drift, the default 0.01) to 1 (as fast as its
# units). Gains are unbounded and the spread set point is the base
# setting's (1.0 by default) unless a search space names them.
DEFAULT_SEARCH_SPACE = {
    "rate": {"min": 0.01, "max": 0.5, "sampling": "log"},
    "bias_rate": {"min": 0.01, "max": 0.5, "sampling": "log"},
    "momentum": {"min": 0.99, "max": 0.9999, "sampling": "reverse_log"},
    "max_step": None,
    "min_gain": None,
    "max_gain": None,
    "period": {"min": 1, "max": 16, "sampling": "log"},
    "warmup": [0, 10, 100],
    "target_std": None,
    "anchor": {"min": 0.001, "max": 1.0, "sampling": "log"},
    "silence_evidence": None,
    "max_offset": None,
    "target_mode": list(TARGET_MODES),
    "per_layer_targets": [False, True],
    "target_rate": {"min": 0.3, "max": 0.7, "sampling": "linear"},
    "scale_invariant": None,
    "norm_relaxation": None,
    "center_inputs": None,
    "hold_norms": None,
}


def _fail(path, expected, value):
    raise ValueError(
        f"Received an invalid value for `{path}`, expected {expected}. "
        f"Received: {path}={value!r}"
    )


def _check_value(name, value, path):
    """One fixed or choice value of parameter `name`."""
    if name == "target_mode":
        if value not in TARGET_MODES:
            _fail(path, f"one of {list(TARGET_MODES)}", value)
        return value
    if name in BOOLEAN_PARAMETERS:
        if not isinstance(value, bool):
            _fail(path, "true or false", value)
        return value
    if isinstance(value, str):
        try:  # YAML reads `1e-3` as a string.
            value = float(value)
        except ValueError:
            _fail(path, f"a valid value of `{name}`", value)
    if value is None:
        if name == "target_rate":
            _fail(
                path, "a number in (0, 1) (use target_mode for the layer mean)", value
            )
        # `None` is a setting of some parameters, but a search space entry
        # of `None` means "not searched": it cannot be one of the values.
        _fail(path, f"a number (a `null` entry leaves `{name}` unsearched)", value)
    try:
        if name == "norm_relaxation":  # a layer argument, checked as the layers do
            return in_range(name, value, 0.0, 1.0)
        return validate_settings(**{name: value})[name]
    except (TypeError, ValueError) as e:
        _fail(path, f"a valid value of `{name}` ({e})", value)


def _check_range(name, spec, path):
    unknown = sorted(set(map(str, spec)) - set(RANGE_KEYS))
    if unknown or "min" not in spec or "max" not in spec:
        _fail(
            path,
            "a range mapping with keys `min`, `max`, optional `sampling` and `step`",
            spec,
        )
    if name == "target_mode" or name in BOOLEAN_PARAMETERS:
        _fail(path, "a value or a list of values (no range)", spec)
    low = _check_value(name, spec["min"], f"{path}.min")
    high = _check_value(name, spec["max"], f"{path}.max")
    if not low < high:
        _fail(path, "`min` below `max`", spec)
    sampling = spec.get("sampling", "linear")
    if sampling not in SAMPLINGS:
        _fail(f"{path}.sampling", f"one of {list(SAMPLINGS)}", sampling)
    if sampling != "linear" and low <= 0:
        _fail(path, f"`min` > 0 with {sampling} sampling", spec)
    step = spec.get("step")
    if step is not None:
        step = _check_step(name, step, f"{path}.step")
    return {"min": low, "max": high, "sampling": sampling, "step": step}


def _check_step(name, step, path):
    integral = name in INTEGER_PARAMETERS
    kind = numbers.Integral if integral else numbers.Real
    if isinstance(step, bool) or not isinstance(step, kind) or not step > 0:
        _fail(path, "a positive " + ("integer" if integral else "number"), step)
    return int(step) if integral else float(step)


def check_parameter(name, spec, path):
    """Validates one entry of a search space; returns it in canonical form."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        return _check_range(name, spec, path)
    if isinstance(spec, (list, tuple)):
        if not spec:
            _fail(path, "a non-empty list", spec)
        values = [_check_value(name, v, f"{path}[{i}]") for i, v in enumerate(spec)]
        if len(set(map(repr, values))) != len(values):
            _fail(path, "a list without repeated entries", spec)
        return values
    return _check_value(name, spec, path)


def validate_search_space(overrides=None, path="search_space"):
    """The default search space updated with `overrides`, validated.

    Args:
        overrides: optional mapping of parameter names to specs (see the
            module docstring); the other parameters keep their defaults.
        path: how errors name the mapping, e.g. `tune.search_space`.

    Returns:
        The full search space: every parameter, in canonical form.

    Raises:
        ValueError: naming the parameter by its path and echoing the value.
    """
    overrides = {} if overrides is None else overrides
    if not isinstance(overrides, dict):
        _fail(path, "a mapping of parameter names to specs", overrides)
    check_known_keys(overrides, PARAMETERS, "search space parameter", path)
    merged = {**copy.deepcopy(DEFAULT_SEARCH_SPACE), **overrides}
    space = {
        name: check_parameter(name, merged[name], f"{path}.{name}")
        for name in PARAMETERS
    }
    _check_target(space, path)
    _check_relaxation_searchable(space, path)
    _check_held_norms_unbounded(space, path)
    return space


def validate_for_model(
    overrides, homeostatic_layers, path="search_space", held_by_default=True
):
    """`validate_search_space` for the callback or for homeostatic layers.

    Homeostatic layers all take the same settings, so `per_layer_targets`
    defaults to false for them and may not be true; the layers' own
    arguments (`LAYER_PARAMETERS`) are refused for the callback, and the
    callback's own (`hold_norms`) for the layers. `held_by_default`: the
    callback holds norms where the space does not draw `hold_norms` (its
    default), which refuses gain bounds.
    """
    if homeostatic_layers:
        overrides = {"per_layer_targets": False, **(overrides or {})}
    space = validate_search_space(overrides, path)
    if not homeostatic_layers:
        named = [
            name
            for name in searches_layer_parameters(space)
            if name not in CALLBACK_LAYER_PARAMETERS
        ]
        if named:
            _fail(
                f"{path}.{named[0]}",
                "no layer argument for SynapticScalingCallback (search it on "
                "homeostatic layers: `homeostatic_layers=True`, or "
                "`model.normalization: homeostatic_layers` in a config)",
                space[named[0]],
            )
        if space["hold_norms"] is None and held_by_default:
            _check_default_held_norms_unbounded(space, path)
    elif space["hold_norms"] is not None:
        _fail(
            f"{path}.hold_norms",
            "no argument of homeostatic layers (they hold norms with "
            "`scale_invariant`)",
            space["hold_norms"],
        )
    elif True in spec_values(space["per_layer_targets"]) and (
        "absolute" in spec_values(space["target_mode"])
    ):
        _fail(
            f"{path}.per_layer_targets",
            "false with homeostatic layers (`homeostatic_layers=True`: every "
            "layer takes the same settings, one shared `target_rate`)",
            space["per_layer_targets"],
        )
    return space


def searches_layer_parameters(space):
    """The names of `LAYER_PARAMETERS` that `space` searches or fixes."""
    return [name for name in LAYER_PARAMETERS if space[name] is not None]


# The `LAYER_PARAMETERS` that `SynapticScalingCallback` takes.
CALLBACK_LAYER_PARAMETERS = ("center_inputs", "hold_norms", "norm_relaxation")


def _check_relaxation_searchable(space, path):
    # The relaxed lengths are those of scale-invariant layers' direction
    # vectors, or of the callback's held norms'.
    if space["norm_relaxation"] is None:
        return
    owner = _relaxation_owner(space)
    if True not in spec_values(space[owner]):
        _fail(
            f"{path}.{owner}",
            "true or a list holding true while `norm_relaxation` is searched "
            "(it acts on scale-invariant layers and held norms only)",
            space[owner],
        )


def _relaxation_owner(space):
    """The option whose direction vectors `norm_relaxation` relaxes:
    `hold_norms` when the space names it, else `scale_invariant`."""
    return "hold_norms" if space["hold_norms"] is not None else "scale_invariant"


def _check_held_norms_unbounded(space, path):
    if True in spec_values(space["hold_norms"]):
        _refuse_gain_bounds(
            space, path, "while `hold_norms` may be true (the held norms are unbounded)"
        )


def _check_default_held_norms_unbounded(space, path):
    # The callback holds norms by default: gain bounds need it said otherwise.
    _refuse_gain_bounds(
        space,
        path,
        "while the callback holds norms, as it does by default (add "
        "`hold_norms: false` to search gain bounds)",
    )


def _refuse_gain_bounds(space, path, why):
    for name in ("min_gain", "max_gain"):
        if space[name] is not None:
            _fail(f"{path}.{name}", f"null (not searched) {why}", space[name])


def _check_target(space, path):
    modes = spec_values(space["target_mode"])
    if "absolute" in modes and space["target_rate"] is None:
        _fail(
            f"{path}.target_rate",
            "a value, a list or a range while `target_mode` may be 'absolute'",
            None,
        )


def spec_values(spec):
    """The values a validated spec can take: its list, or its one value."""
    if spec is None:
        return []
    return spec if isinstance(spec, list) else [spec]


def register(hp, name, spec, label=None):
    """Registers one parameter on `hp`; returns its value for this trial."""
    label = PREFIX + (label or name)
    if isinstance(spec, list):
        if name in BOOLEAN_PARAMETERS and sorted(spec) == [False, True]:
            return hp.Boolean(label, default=spec[0])
        return hp.Choice(label, spec, default=spec[0])
    if not isinstance(spec, dict):
        return hp.Fixed(label, spec)
    if name in INTEGER_PARAMETERS:
        return hp.Int(
            label,
            spec["min"],
            spec["max"],
            step=spec["step"],
            sampling=spec["sampling"],
        )
    return hp.Float(
        label, spec["min"], spec["max"], step=spec["step"], sampling=spec["sampling"]
    )


def declare(hp, space, layer_names, base_settings=None):
    """Registers the search space on `hp` and returns this trial's settings.

    Args:
        hp: a `keras_tuner.HyperParameters`.
        space: a validated search space (`validate_search_space`).
        layer_names: names of the scaled layers (for per-layer targets).
        base_settings: settings of the parameters not searched (`None`
            entries), defaults to `keras_homeostasis.settings.DEFAULTS`.

    Returns:
        A list of `(layer_names or None, settings)`: one group with `None`
        (every scaled layer) for a shared `target_rate`, or one group per
        layer with per-layer targets.
    """
    settings = validate_settings(**(base_settings or {}))
    for name in SETTING_PARAMETERS:
        if name in ABSOLUTE_PARAMETERS and space["target_mode"] is not None:
            continue
        if space[name] is not None:
            settings[name] = register(hp, name, space[name])
    if space["target_mode"] is None:
        return [(None, validate_settings(**settings))]
    mode = register(hp, "target_mode", space["target_mode"])
    with hp.conditional_scope(PREFIX + "target_mode", ["absolute"]):
        absolute = _absolute_settings(hp, space)
        targets = _absolute_targets(hp, space, layer_names)
    if mode != "absolute":
        relative = {"target_rate": None, "target_std": None}
        return [(None, validate_settings(**{**settings, **relative}))]
    settings.update(absolute)
    if isinstance(targets, dict):
        return [
            ([layer], validate_settings(**{**settings, "target_rate": target}))
            for layer, target in targets.items()
        ]
    return [(None, validate_settings(**{**settings, "target_rate": targets}))]


def declare_layer_options(hp, space):
    """Registers `LAYER_PARAMETERS` on `hp`; returns this trial's values.

    Returns a dict of the homeostatic layers' arguments that `space`
    searches or fixes (`scale_invariant`, `center_inputs`, the callback's
    `hold_norms`, and `norm_relaxation` while the one of `scale_invariant`
    and `hold_norms` the space names is true); empty when it names none.
    """
    options = {}
    owner = _relaxation_owner(space)
    for name in LAYER_PARAMETERS:
        if name == "norm_relaxation" or space[name] is None:
            continue  # Drawn right after its owner, in its conditional scope.
        options[name] = register(hp, name, space[name])
        if name == owner and space["norm_relaxation"] is not None:
            with hp.conditional_scope(PREFIX + owner, [True]):
                relaxation = register(hp, "norm_relaxation", space["norm_relaxation"])
            if options[owner]:
                options["norm_relaxation"] = relaxation
    return options


def _absolute_settings(hp, space):
    """The searched settings that only act with an absolute set point."""
    return {
        name: register(hp, name, space[name])
        for name in ABSOLUTE_PARAMETERS
        if space[name] is not None
    }


def _absolute_targets(hp, space, layer_names):
    """The shared target_rate, or `{layer: target_rate}`; None while inactive."""
    choices = spec_values(space["per_layer_targets"]) or [False]
    per_layer = register(hp, "per_layer_targets", space["per_layer_targets"] or False)
    shared = None
    per_layer_values = {}
    if False in choices:
        with hp.conditional_scope(PREFIX + "per_layer_targets", [False]):
            shared = register(hp, "target_rate", space["target_rate"])
    if True in choices:
        with hp.conditional_scope(PREFIX + "per_layer_targets", [True]):
            for layer in layer_names:
                label = f"{LAYER_TARGETS}/{layer}"
                per_layer_values[layer] = register(
                    hp, "target_rate", space["target_rate"], label
                )
    return per_layer_values if per_layer else shared


def config_updates(values):
    """Maps `scaling/...` hyper-parameter values to `scaling` config keys.

    Args:
        values: a trial's `hp.values` (only active parameters).

    Returns:
        A dict of `scaling` section keys: with `target_mode` `layer_mean`,
        `target_rate` and `target_std` are None (the layer's means); with
        `absolute`, `target_rate` is the shared set point, or None with
        `layer_targets` set for per-layer set points; `scale_invariant`,
        `norm_relaxation`, `center_inputs` and `hold_norms` when the trial
        drew them (arguments of the homeostatic layers or the callback).
    """
    updates = {}
    for name in SETTING_PARAMETERS + LAYER_PARAMETERS:
        if PREFIX + name in values:
            updates[name] = values[PREFIX + name]
    mode = values.get(PREFIX + "target_mode")
    if mode == "layer_mean":
        updates.update(target_rate=None, target_std=None, layer_targets=None)
    elif mode == "absolute":
        prefix = f"{PREFIX}{LAYER_TARGETS}/"
        layer_targets = {
            k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)
        }
        if values.get(PREFIX + "per_layer_targets") and layer_targets:
            updates.update(target_rate=None, layer_targets=layer_targets)
        else:
            updates.update(
                target_rate=values[PREFIX + "target_rate"], layer_targets=None
            )
    return updates


def describe(space):
    """One line per searched parameter, for documentation and logs."""
    lines = []
    for name in PARAMETERS:
        spec = space[name]
        if spec is None:
            default = {**LAYER_DEFAULTS, **DEFAULTS}.get(name)
            shown = default if isinstance(default, str) else repr(default)
            lines.append(f"{name}: not searched (default {shown})")
        elif isinstance(spec, dict):
            step = "" if spec["step"] is None else f", step {spec['step']}"
            lines.append(
                f"{name}: {spec['sampling']} in [{spec['min']}, {spec['max']}]{step}"
            )
        elif isinstance(spec, list):
            lines.append(f"{name}: one of {spec}")
        else:
            lines.append(f"{name}: fixed {spec!r}")
    return lines
