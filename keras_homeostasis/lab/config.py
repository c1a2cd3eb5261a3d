"""Experiment configs: YAML files validated against one schema.

`SCHEMA` below is the single place where every key, its default and its
meaning are defined (`docs/configs.md` documents the same keys). Unknown keys
and wrong types raise `ConfigError` naming the key by its path, e.g.
`training.epochs`, and listing the allowed keys. The `scaling` keys of the
first release's rule (`settings.LEGACY`: `target`, `scale_bias`, `revive`,
`silent_rate`) are ignored with a `UserWarning`, so old run folders' configs
still load.

Relative paths: `data.dataset`, when it names a file, is looked up relative
to the current directory, then the config file's folder, then that folder's
parent (the project root when configs live in `configs/`); the first that
exists wins. `output.run_dir` is relative to the current directory and
defaults to `runs/<config file name without .yaml>`.

Shipped configs: a config path that names no file is looked up by its file
name among the configs shipped with the package (`configs/` of a checkout,
`keras_homeostasis/configs/` of an installed wheel), so
`keras-homeostasis train configs/quickstart.yaml` (or just `quickstart`)
works from any folder.
"""

import copy
import math
import numbers
import os
import warnings

from keras_homeostasis.lab import models
from keras_homeostasis.lab.data import CHOICES as DATASET_CHOICES
from keras_homeostasis.settings import DEFAULTS as SCALING_DEFAULTS
from keras_homeostasis.settings import LEGACY as SCALING_LEGACY
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
# Keys of the scaling section that are not SynapticScalingCallback settings.
SCALING_EXTRA_KEYS = ("layers", "layer_targets")


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
    section = _section(raw, OPTIMIZER_SCHEMA, path)
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


def defaults():
    """The full default config (a fresh copy)."""
    return {
        section: {name: copy.deepcopy(key.default) for name, key in keys.items()}
        for section, keys in SCHEMA.items()
    }


def _section(raw, keys, path):
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


def validate_config(raw, config_path=None):
    """Validates a config mapping; returns the full config with defaults.

    Args:
        raw: the parsed YAML (a dict, or None for an empty file).
        config_path: the YAML file, used to resolve relative paths and the
            default run folder.
    """
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(
            "A config must be a mapping of sections to keys. "
            f"Allowed sections: {sorted(SCHEMA)}. Received: {raw!r}"
        )
    check_known_keys(raw, SCHEMA, "config section", error=ConfigError)
    raw = _without_legacy_scaling(raw)
    config = {
        name: _section({} if raw.get(name) is None else raw[name], keys, name)
        for name, keys in SCHEMA.items()
    }
    config["optimizer"] = optimizer_section(config["optimizer"])
    config["scaling"] = _full_scaling(config["scaling"])
    _resolve_paths(config, config_path)
    _check_sweeps(config, raw.get("compare") or {})
    compare = config["compare"]
    compare["architectures"] = compare["architectures"] or [
        config["model"]["architecture"]
    ]
    compare["optimizers"] = compare["optimizers"] or [dict(config["optimizer"])]
    return config


def _check_sweeps(config, raw_compare):
    """Checks the keys of `compare`'s batch-size and learning-rate axes together."""
    compare = config["compare"]
    if compare["batch_sizes"] is not None and compare["train_examples"] is None:
        raise ConfigError(
            "Missing config key `compare.train_examples`: `compare.batch_sizes` "
            "trains every batch size on the same number of examples, which "
            "`compare.train_examples` sets. Received: compare.batch_sizes="
            f"{compare['batch_sizes']!r}"
        )
    if compare["learning_rates"] is None:
        return
    if isinstance(raw_compare, dict) and raw_compare.get("optimizers") is not None:
        sections = [
            (f"compare.optimizers[{i}]", o) for i, o in enumerate(compare["optimizers"])
        ]
    else:
        sections = [("optimizer", config["optimizer"])]
    for path, section in sections:
        if section["learning_rate"] is not None:
            raise ConfigError(
                f"Invalid config key `{path}.learning_rate`: "
                "`compare.learning_rates` sets the learning rate of every run; "
                f"remove it. Received: {path}.learning_rate="
                f"{section['learning_rate']!r}"
            )


def _without_legacy_scaling(raw):
    """`raw` without the first release's `scaling` keys, with a warning."""
    scaling = raw.get("scaling")
    if not isinstance(scaling, dict):
        return raw
    legacy = sorted(str(k) for k in scaling if k in SCALING_LEGACY)
    if not legacy:
        return raw
    warnings.warn(
        f"Ignoring config key(s) {[f'scaling.{k}' for k in legacy]}: settings "
        "of the first release's rule. The current rule is set by "
        "`scaling.target_std` and `scaling.target_rate` (see docs/configs.md).",
        UserWarning,
        stacklevel=3,
    )
    kept = {k: v for k, v in scaling.items() if k not in SCALING_LEGACY}
    return {**raw, "scaling": kept}


def _full_scaling(scaling):
    settings = {k: v for k, v in scaling.items() if k not in SCALING_EXTRA_KEYS}
    try:
        full = validate_settings(**settings)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"Invalid config section `scaling`: {e}") from None
    if scaling["layers"] is not None and scaling["layer_targets"] is not None:
        raise ConfigError(
            "Invalid config section `scaling`: give `scaling.layers` or "
            "`scaling.layer_targets` (which names the layers to scale), not both."
        )
    return {**full, **{k: scaling[k] for k in SCALING_EXTRA_KEYS}}


def _resolve_paths(config, config_path):
    data = config["data"]
    if data["dataset"] not in DATASET_CHOICES:
        data["dataset"] = resolve_path(data["dataset"], config_path)
    if config["output"]["run_dir"] is None:
        stem = "run"
        if config_path is not None:
            stem = os.path.splitext(os.path.basename(config_path))[0]
        config["output"]["run_dir"] = os.path.join("runs", stem)


def resolve_path(path, config_path=None):
    """Finds a relative data file: CWD, then the config's folder, then its parent.

    Returns the first existing candidate as an absolute path, or, when none
    exists, the path relative to the current directory (the loader then
    reports it as missing).
    """
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    candidates = [os.path.abspath(path)]
    if config_path is not None:
        folder = os.path.dirname(os.path.abspath(config_path))
        candidates += [
            os.path.join(folder, path),
            os.path.join(os.path.dirname(folder), path),
        ]
    for candidate in candidates:
        if os.path.exists(candidate):
            return os.path.normpath(candidate)
    return candidates[0]


def shipped_configs_folder():
    """The shipped configs: the wheel's `keras_homeostasis/configs`, else the
    checkout's top-level `configs/`; None when neither exists."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for folder in (package, os.path.dirname(package)):
        candidate = os.path.join(folder, "configs")
        if os.path.isdir(candidate):
            return candidate
    return None


def shipped_config(path):
    """`path` when it exists, else the shipped config of that file name (with
    or without `.yaml`) when there is one, else `path` unchanged."""
    folder = shipped_configs_folder()
    if os.path.exists(path) or folder is None:
        return path
    name = os.path.basename(path)
    for candidate in (name, f"{name}.yaml"):
        if os.path.isfile(os.path.join(folder, candidate)):
            return os.path.join(folder, candidate)
    return path


def find_config(path):
    """The config file `path` names (see `shipped_config`).

    Raises `FileNotFoundError` naming the shipped configs when there is none.
    """
    found = shipped_config(path)
    if os.path.isfile(found):
        return found
    folder = shipped_configs_folder()
    shipped = sorted(os.listdir(folder)) if folder else []
    configs = ", ".join(n for n in shipped if n.endswith(".yaml")) or "none"
    raise FileNotFoundError(
        f"Config file not found: {path!r} (shipped configs: {configs})"
    )


def load_config(path, overrides=None):
    """Reads and validates a YAML config file.

    Args:
        path: the YAML file.
        overrides: optional `{section: {key: value}}` applied over the file
            before validation (what command-line flags set).

    Returns:
        The full config: every section and key, defaults filled in.
    """
    import yaml

    path = find_config(path)
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"Could not parse {path!r} as YAML: {e}") from None
    raw = {} if raw is None else raw
    if isinstance(raw, dict):
        for section, values in (overrides or {}).items():
            merged = dict(raw.get(section) or {})
            merged.update(values)
            raw[section] = merged
    return validate_config(raw, config_path=path)


def dump_config(config, path):
    """Writes a config as YAML (the resolved config of a run)."""
    import yaml

    class NoAliases(yaml.SafeDumper):
        # Repeated sections are written out in full, not as YAML anchors.
        def ignore_aliases(self, data):
            return True

    with open(path, "w", encoding="utf-8") as f:
        yaml.dump(config, f, Dumper=NoAliases, sort_keys=False)


def optimizer_kwargs(section):
    """`build_optimizer` arguments from an optimizer section (nulls dropped)."""
    return {k: v for k, v in section.items() if v is not None}


def optimizer_label(section):
    """A short label such as `sgd` or `sgd(learning_rate=0.1)`."""
    extra = {k: v for k, v in optimizer_kwargs(section).items() if k != "name"}
    if not extra:
        return section["name"]
    inside = ",".join(f"{k}={v}" for k, v in sorted(extra.items()))
    return f"{section['name']}({inside})"


def scaling_kwargs(config):
    """Settings of the scaling section without `layers` and `layer_targets`."""
    return {k: v for k, v in config["scaling"].items() if k not in SCALING_EXTRA_KEYS}
