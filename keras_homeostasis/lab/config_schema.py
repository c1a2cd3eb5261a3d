"""The config schema: every key of an experiment config, its default,
its validator and its meaning (`keras_homeostasis.lab.config` loads and
resolves configs against it; `docs/configs.md` documents the same keys).
"""

import copy
import math
import numbers

from keras_homeostasis.lab import models
from keras_homeostasis.lab.data import CHOICES as DATASET_CHOICES
from keras_homeostasis.settings import DEFAULTS as SCALING_DEFAULTS
from keras_homeostasis.settings import validate_settings
from keras_homeostasis.validation import check_known_keys


class ConfigError(ValueError):
    """A config key is unknown, of the wrong type or out of range."""


class _Key:
    """One config key: its default, its checker and its meaning."""

    def __init__(self, default, check, doc):
        self.default = default
        self.check = check
        self.doc = doc


def _fail(path, expected, value):
    raise ConfigError(
        f"Invalid config value for `{path}`: expected {expected}. "
        f"Received: {path}={value!r} (of type {type(value).__name__})"
    )


def integer(minimum=None, optional=False):
    def check(path, value):
        if value is None and optional:
            return None
        bad = isinstance(value, bool) or not isinstance(value, numbers.Integral)
        if bad or (minimum is not None and value < minimum):
            bound = "" if minimum is None else f" >= {minimum}"
            _fail(path, f"an integer{bound}" + (" or null" if optional else ""), value)
        return int(value)

    return check


def number(low=-math.inf, high=math.inf, low_open=False, optional=False):
    def check(path, value):
        if value is None and optional:
            return None
        parsed = value
        # PyYAML reads `1e-3` (no dot) as a string: accept numeric strings.
        if isinstance(value, str):
            try:
                parsed = float(value)
            except ValueError:
                parsed = None
        bad = isinstance(parsed, bool) or not isinstance(parsed, numbers.Real)
        if not bad:
            parsed = float(parsed)
            too_low = parsed <= low if low_open else parsed < low
            bad = not math.isfinite(parsed) or too_low or parsed > high
        if bad:
            left = "(" if low_open else "["
            _fail(path, f"a number in {left}{low}, {high}]", value)
        return parsed

    return check


def boolean(optional=False):
    def check(path, value):
        if value is None and optional:
            return None
        if not isinstance(value, bool):
            _fail(path, "true or false" + (" or null" if optional else ""), value)
        return value

    return check


def choice(options, optional=False):
    def check(path, value):
        if value is None and optional:
            return None
        if not isinstance(value, str) or value not in options:
            _fail(path, f"one of {list(options)}", value)
        return value

    return check


def text(path, value):
    if not isinstance(value, str) or not value:
        _fail(path, "a non-empty string", value)
    return value


def list_of(item, optional=False, unique=False):
    def check(path, value):
        if value is None and optional:
            return None
        if not isinstance(value, list) or not value:
            _fail(path, "a non-empty list", value)
        items = [item(f"{path}[{i}]", v) for i, v in enumerate(value)]
        if unique and len(set(map(repr, items))) != len(items):
            _fail(path, "a list without repeated entries", value)
        return items

    return check


def jit(path, value):
    if value != "auto" and not isinstance(value, bool):
        _fail(path, "true, false or 'auto'", value)
    return value


def dataset(path, value):
    if not isinstance(value, str) or not value:
        _fail(path, f"one of {list(DATASET_CHOICES)} or a path to a .npz file", value)
    return value


def scaling_setting(name):
    def check(path, value):
        try:
            return validate_settings(**{name: value})[name]
        except (TypeError, ValueError) as e:
            raise ConfigError(f"Invalid config value for `{path}`: {e}") from None

    return check


OPTIMIZER_SCHEMA = {
    "name": _Key("adam", choice(tuple(models.OPTIMIZER_DEFAULTS)), "optimizer"),
    "learning_rate": _Key(
        None,
        number(0.0, low_open=True, optional=True),
        "learning rate; null for the optimizer's default (sgd 0.05, adam and "
        "adamw 1e-3)",
    ),
    "momentum": _Key(None, number(0.0, 1.0, optional=True), "sgd momentum (0.9)"),
    "nesterov": _Key(None, boolean(optional=True), "sgd Nesterov momentum"),
    "weight_decay": _Key(
        None, number(0.0, optional=True), "decoupled weight decay (adamw 0.004)"
    ),
    "beta_1": _Key(None, number(0.0, 1.0, optional=True), "adam/adamw beta_1"),
    "beta_2": _Key(None, number(0.0, 1.0, optional=True), "adam/adamw beta_2"),
    "epsilon": _Key(None, number(0.0, low_open=True, optional=True), "adam epsilon"),
    "clipnorm": _Key(
        None, number(0.0, low_open=True, optional=True), "clip each gradient's norm"
    ),
}

SCALING_SCHEMA = {
    name: _Key(
        default,
        scaling_setting(name),
        "synaptic scaling setting (see SynapticScalingCallback)",
    )
    for name, default in SCALING_DEFAULTS.items()
}
SCALING_SCHEMA["layers"] = _Key(
    None,
    list_of(text, optional=True),
    "names of the layers to scale; null for every hidden Dense/Conv layer",
)


def layer_targets(path, value):
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        _fail(path, "a mapping of layer names to firing rates in (0, 1)", value)
    targets = {}
    for name, target in value.items():
        if target is None:
            _fail(f"{path}.{name}", "a number in (0, 1)", target)
        targets[str(name)] = scaling_setting("target_rate")(f"{path}.{name}", target)
    return targets


SCALING_SCHEMA["layer_targets"] = _Key(
    None,
    layer_targets,
    "per-layer firing-rate set points {layer: target_rate}; the named layers "
    "are scaled, each toward its own target_rate",
)
SCALING_SCHEMA["norm_relaxation"] = _Key(
    0.0,
    number(0.0, 1.0),
    "scale-invariant layers and held norms (hold_norms) only: how fast each "
    "unit's direction-vector length relaxes "
    "toward its gain, per optimizer step",
)
# Keys of the scaling section that are not SynapticScalingCallback settings.
SCALING_EXTRA_KEYS = ("layers", "layer_targets", "norm_relaxation")


# Keys of the optimizer section that only some optimizers take.
OPTIMIZER_ONLY = {
    "momentum": ("sgd",),
    "nesterov": ("sgd",),
    "beta_1": ("adam", "adamw"),
    "beta_2": ("adam", "adamw"),
    "epsilon": ("adam", "adamw"),
}


def optimizer_section(raw, path="optimizer"):
    """Validates one optimizer mapping, including keys its optimizer lacks."""
    section = validate_section(raw, OPTIMIZER_SCHEMA, path)
    for name, owners in OPTIMIZER_ONLY.items():
        if section[name] is not None and section["name"] not in owners:
            raise ConfigError(
                f"Invalid config key `{path}.{name}`: only {list(owners)} take it, "
                f"and `{path}.name` is {section['name']!r}."
            )
    return section


def search_space(path, value):
    if value is None:
        return None
    # Imported here: the tuning package is optional for train and compare.
    from keras_homeostasis.tuning import search_space as space_lib

    try:
        space_lib.validate_search_space(value, path)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"Invalid config value: {e}") from None
    return {
        str(name): space_lib.check_parameter(name, spec, f"{path}.{name}")
        for name, spec in value.items()
    }


def execution_steps(path, value):
    if value is None or value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        _fail(path, "an integer >= 1, 'auto' or null", value)
    return int(value)


# `compare.lr_scaling`: the exponent k of lr * (batch / data.batch_size) ** k.
LR_SCALING = {"sqrt": 0.5, "linear": 1.0, "none": 0.0}
TUNERS = ("random", "bayesian", "hyperband")
OBJECTIVES = (
    "val_accuracy",
    "val_loss",
    "val_homeostasis_score",
    "val_usage_entropy",
)


def _optimizer_entry(path, value):
    if isinstance(value, str):
        return optimizer_section({"name": value}, path)
    if isinstance(value, dict):
        return optimizer_section(value, path)
    _fail(path, "an optimizer name or a mapping like the `optimizer` section", value)


SCHEMA = {
    "data": {
        "dataset": _Key(
            "digits",
            dataset,
            f"one of {list(DATASET_CHOICES)} or a path to a .npz file",
        ),
        "limit": _Key(None, integer(1, optional=True), "training samples to keep"),
        "batch_size": _Key(128, integer(1), "batch size"),
    },
    "model": {
        "architecture": _Key("mlp", choice(models.ARCHITECTURES), "mlp or cnn"),
        "hidden": _Key(
            list(models.DEFAULT_HIDDEN), list_of(integer(1)), "MLP hidden widths"
        ),
        "normalization": _Key(
            "none", choice(models.NORMALIZATIONS), "normalization method"
        ),
        "groups": _Key(models.DEFAULT_GROUPS, integer(1), "groups of groupnorm"),
    },
    "optimizer": OPTIMIZER_SCHEMA,
    "training": {
        "epochs": _Key(5, integer(1), "training epochs"),
        "seed": _Key(0, integer(0), "random seed (weights, shuffling)"),
        "steps_per_execution": _Key(1, integer(1), "steps per compiled call"),
        "jit_compile": _Key("auto", jit, "XLA compilation: true, false or 'auto'"),
    },
    "scaling": SCALING_SCHEMA,
    "output": {
        "run_dir": _Key(
            None,
            lambda path, v: None if v is None else text(path, v),
            "run folder (train) or results folder (compare); default "
            "runs/<config name>",
        ),
    },
    "compare": {
        "methods": _Key(
            list(models.NORMALIZATIONS),
            list_of(choice(models.NORMALIZATIONS), unique=True),
            "normalization methods to compare",
        ),
        "optimizers": _Key(
            None,
            list_of(_optimizer_entry, optional=True),
            "optimizer names or mappings; null for the `optimizer` section",
        ),
        "seeds": _Key([0], list_of(integer(0), unique=True), "seeds per setting"),
        "architectures": _Key(
            None,
            list_of(choice(models.ARCHITECTURES), optional=True, unique=True),
            "architectures; null for `model.architecture`",
        ),
        "accuracy_threshold": _Key(
            0.9,
            number(0.0, 1.0, low_open=True),
            "test accuracy whose first epoch is reported; a run with it or more "
            "(and no divergence) trains",
        ),
        "batch_sizes": _Key(
            None,
            list_of(integer(1), optional=True, unique=True),
            "batch-size axis of the grid; null for `data.batch_size` alone",
        ),
        "train_examples": _Key(
            None,
            integer(1, optional=True),
            "train each run on the first train_examples training examples "
            "(`training.epochs` passes); required with batch_sizes",
        ),
        "lr_scaling": _Key(
            "sqrt",
            choice(LR_SCALING),
            "learning rate at batch b: lr * (b / data.batch_size) ** k, "
            "k = 1/2 (sqrt), 1 (linear) or 0 (none)",
        ),
        "learning_rates": _Key(
            None,
            list_of(number(0.0, low_open=True), optional=True, unique=True),
            "learning-rate axis of the grid (at data.batch_size); null for each "
            "optimizer's own",
        ),
        "steps_per_execution": _Key(
            None,
            execution_steps,
            "null for training.steps_per_execution, an integer, or 'auto'",
        ),
        "jit_compile": _Key(
            None,
            lambda path, v: None if v is None else jit(path, v),
            "null for training.jit_compile, or true, false, 'auto'",
        ),
    },
    "tune": {
        "tuner": _Key("random", choice(TUNERS), "random, bayesian or hyperband"),
        "max_trials": _Key(10, integer(1), "trials (random, bayesian)"),
        "executions_per_trial": _Key(1, integer(1), "trainings per trial"),
        "objective": _Key("val_accuracy", choice(OBJECTIVES), "what to maximise"),
        "entropy_weight": _Key(
            0.1, number(0.0), "weight of the usage entropy in the score"
        ),
        "validation_split": _Key(
            0.2,
            number(0.0, 0.9, low_open=True),
            "fraction of the training data held out for validation",
        ),
        "seed": _Key(None, integer(0, optional=True), "tuner seed"),
        "initial_points": _Key(
            None, integer(1, optional=True), "random trials before bayesian"
        ),
        "hyperband_factor": _Key(3, integer(2), "hyperband reduction factor"),
        "max_consecutive_failed_trials": _Key(
            3, integer(1), "failed trials in a row that stop the search"
        ),
        "overwrite": _Key(False, boolean(), "start afresh instead of resuming"),
        "search_space": _Key(None, search_space, "search space overrides"),
    },
}


def validate_section(raw, keys, path):
    if not isinstance(raw, dict):
        _fail(path, "a mapping of keys to values", raw)
    check_known_keys(raw, keys, "config key", path, error=ConfigError)
    resolved = {}
    for name, key in keys.items():
        if name in raw:
            resolved[name] = key.check(f"{path}.{name}", raw[name])
        else:
            resolved[name] = copy.deepcopy(key.default)
    return resolved
