"""Validation of the homeostatic hyper-parameters, shared by layers and callback."""

import math
import numbers
import warnings

DEFAULTS = {
    "target_std": 1.0,
    "target_rate": None,
    "rate": 0.03,
    "bias_rate": 0.03,
    "momentum": 0.999,
    "max_step": 0.05,
    "min_gain": None,
    "max_gain": None,
    "period": 1,
    "warmup": 10,
    "anchor": 0.01,
    "silence_evidence": None,
    "max_offset": None,
}

# Settings of the first release's rule (mean-|activity| set point, bounded
# gains, revive step). Configs that still name them load with a warning.
LEGACY = ("target", "scale_bias", "revive", "silent_rate")


def _number(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Expected a number for `{name}`. Received: {name}={value!r} "
            f"of type {type(value).__name__}"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(
            f"Received an invalid value for `{name}`, expected a finite "
            f"number. Received: {name}={value!r}"
        )
    return value


def _integer(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"Expected an integer for `{name}`. Received: {name}={value!r} "
            f"of type {type(value).__name__}"
        )
    if value < minimum:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected an integer "
            f">= {minimum}. Received: {name}={value!r}"
        )
    return int(value)


def in_range(name, value, low, high, low_open=False, high_open=False):
    value = _number(name, value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(
            f"Received an invalid value for `{name}`, expected a number in "
            f"{left}{low}, {high}{right}. Received: {name}={value!r}"
        )
    return value


def validate_settings(**settings):
    """Returns the full, validated settings dict; raises on any bad value.

    Unknown names raise `TypeError`; bad values raise `ValueError` naming the
    argument and echoing the value, as Keras layers do.
    """
    legacy = sorted(set(settings) & set(LEGACY))
    if legacy:
        warnings.warn(
            f"Ignoring synaptic scaling argument(s) {legacy} of the first "
            "release's rule; the current rule is set by `target_std` and "
            "`target_rate` (see keras_homeostasis.rule).",
            stacklevel=3,
        )
        settings = {k: v for k, v in settings.items() if k not in LEGACY}
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise TypeError(
            f"Unknown synaptic scaling argument(s) {unknown}. "
            f"Expected some of {sorted(DEFAULTS)}."
        )
    s = {**DEFAULTS, **settings}
    if s["target_std"] is not None:
        s["target_std"] = in_range(
            "target_std", s["target_std"], 0.0, math.inf, True, True
        )
    if s["target_rate"] is not None:
        s["target_rate"] = in_range(
            "target_rate", s["target_rate"], 0.0, 1.0, True, True
        )
    s["rate"] = in_range("rate", s["rate"], 0.0, 1.0, low_open=True)
    s["bias_rate"] = in_range("bias_rate", s["bias_rate"], 0.0, 1.0)
    s["momentum"] = in_range("momentum", s["momentum"], 0.0, 1.0, high_open=True)
    s["anchor"] = in_range("anchor", s["anchor"], 0.0, 1.0)
    s["max_step"] = in_range("max_step", s["max_step"], 0.0, 1.0, low_open=True)
    if s["min_gain"] is not None:
        s["min_gain"] = in_range("min_gain", s["min_gain"], 0.0, 1.0, low_open=True)
    if s["max_gain"] is not None:
        s["max_gain"] = in_range("max_gain", s["max_gain"], 1.0, math.inf, False, True)
    if s["silence_evidence"] is not None:
        s["silence_evidence"] = in_range(
            "silence_evidence", s["silence_evidence"], 1.0, math.inf, False, True
        )
    if s["max_offset"] is not None:
        s["max_offset"] = in_range(
            "max_offset", s["max_offset"], 0.0, math.inf, True, True
        )
    s["period"] = _integer("period", s["period"], 1)
    s["warmup"] = _integer("warmup", s["warmup"], 0)
    return s


def refuse_gain_bounds(option, settings):
    """A ValueError naming `min_gain`/`max_gain` when `settings` sets them:
    with `option` (`scale_invariant`, `hold_norms`) each unit's kernel norm
    is the rule's gain, which the bounds, made for cumulative factors,
    would clip at absolute norms."""
    bounded = [k for k in ("min_gain", "max_gain") if settings.get(k) is not None]
    if bounded:
        raise ValueError(
            f"`{option}=True` leaves each unit's kernel norm to the rule "
            f"without bounds; do not pass {bounded}, or pass {option}=False "
            "to bound cumulative factors. Received: "
            + ", ".join(f"{k}={settings[k]!r}" for k in bounded)
        )


def validate_norm_relaxation(value, option, enabled):
    """`value` as a fraction in [0, 1]; a ValueError naming it when it is
    set without `option=True` (`scale_invariant`, `hold_norms`), the option
    whose direction vectors' lengths it relaxes."""
    value = in_range("norm_relaxation", value, 0.0, 1.0)
    if value and not enabled:
        raise ValueError(
            f"`norm_relaxation` relaxes the direction vectors that `{option}=True` "
            f"gives; pass `{option}=True`. Received: norm_relaxation={value!r}"
        )
    return value
