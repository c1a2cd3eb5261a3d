"""The `continual` command's config: its schema, validation and loading.

A config has the sections `data`, `model`, `training`, `continual`,
`scaling` and `output` (every key in docs/configs.md); an unknown key or a
bad value raises `ContinualConfigError` naming its path and value. The
benchmark itself is in `keras_homeostasis.lab.continual`.
"""

import math
import os

from keras_homeostasis import settings as settings_lib
from keras_homeostasis.validation import check_known_keys

METHODS = (
    "backprop",
    "l2",
    "shrink_and_perturb",
    "batchnorm",
    "layernorm",
    "scaling",
)


class ContinualConfigError(ValueError):
    """A `continual` config with an unknown key or a bad value."""


# ----------------------------------------------------------------------------
# The config: its schema, defaults and validation.


def fail(path, expected, value):
    """Raises `ContinualConfigError` naming the key, what it expects and its value."""
    raise ContinualConfigError(
        f"Invalid config value for `{path}`, expected {expected}. "
        f"Received: {path}={value!r}"
    )


def _integer(minimum):
    def check(path, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            fail(path, f"an integer >= {minimum}", value)
        return value

    return check


def _positive_number(path, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(path, "a positive number", value)
    if not (math.isfinite(value) and value > 0):
        fail(path, "a positive number", value)
    return float(value)


def _non_negative_number(path, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(path, "a number >= 0", value)
    if not (math.isfinite(value) and value >= 0):
        fail(path, "a number >= 0", value)
    return float(value)


def _text(path, value):
    if not isinstance(value, str) or not value:
        fail(path, "a non-empty string", value)
    return value


def _optional_text(path, value):
    return None if value is None else _text(path, value)


def _widths(path, value):
    if not isinstance(value, list) or not value:
        fail(path, "a non-empty list of positive integers", value)
    return [_integer(1)(f"{path}[{i}]", v) for i, v in enumerate(value)]


def _boolean(path, value):
    if not isinstance(value, bool):
        fail(path, "true or false", value)
    return value


def _methods(path, value):
    if not isinstance(value, list) or not value:
        fail(path, f"a non-empty list of methods from {list(METHODS)}", value)
    for i, method in enumerate(value):
        if method not in METHODS:
            fail(f"{path}[{i}]", f"one of {list(METHODS)}", method)
    if len(set(value)) < len(value):
        fail(path, "a list without repeats", value)
    return list(value)


SCHEMA = {
    "data": {
        "dataset": ("mnist", _text),
        "examples_per_task": (60000, _integer(1)),
        "probe_examples": (2000, _integer(1)),
    },
    "model": {"hidden": ([2000, 2000, 2000], _widths)},
    "training": {
        "learning_rate": (0.003, _positive_number),
        "batch_size": (1, _integer(1)),
        "steps_per_execution": (250, _integer(1)),
        "jit_compile": (True, _boolean),
    },
    "continual": {
        "tasks": (800, _integer(1)),
        "methods": (list(METHODS), _methods),
        "seed": (0, _integer(0)),
        "weight_decay": (1e-4, _non_negative_number),
        "perturb_std": (1e-5, _non_negative_number),
    },
    "scaling": None,  # SynapticScalingCallback settings, checked by the library.
    "output": {"run_dir": (None, _optional_text)},
}


def validate_config(raw):
    """Checks a raw `continual` config; returns it with every default filled in.

    Raises:
        ContinualConfigError: an unknown section or key (named by its path,
            e.g. `training.lerning_rate`) or a bad value (the message names
            the key and echoes the value).
    """
    if not isinstance(raw, dict):
        raise ContinualConfigError(
            f"A continual config is a mapping of sections. Received: {raw!r}"
        )
    check_known_keys(raw, SCHEMA, "config section", error=ContinualConfigError)
    config = {}
    for section, keys in SCHEMA.items():
        values = raw.get(section) or {}
        if not isinstance(values, dict):
            fail(section, "a mapping", values)
        if keys is None:
            config[section] = _scaling(values)
            continue
        check_known_keys(values, keys, "config key", section, ContinualConfigError)
        config[section] = {
            key: check(f"{section}.{key}", values[key]) if key in values else default
            for key, (default, check) in keys.items()
        }
    if config["data"]["probe_examples"] > config["data"]["examples_per_task"]:
        fail(
            "data.probe_examples",
            f"at most `data.examples_per_task` ({config['data']['examples_per_task']})",
            config["data"]["probe_examples"],
        )
    return config


def _scaling(values):
    allowed = [*settings_lib.DEFAULTS, *settings_lib.LEGACY, "layers"]
    check_known_keys(values, allowed, "config key", "scaling", ContinualConfigError)
    settings = {k: v for k, v in values.items() if k != "layers"}
    try:
        settings_lib.validate_settings(**settings)
    except (TypeError, ValueError) as e:
        raise ContinualConfigError(f"Invalid config section `scaling`: {e}") from None
    return dict(values)


def load_config(path, overrides=None):
    """Reads and validates a YAML `continual` config.

    Args:
        path: the YAML file.
        overrides: optional `{section: {key: value}}` applied before
            validation (what command-line flags set).

    Returns:
        The validated config; a relative `data.dataset` path is resolved
        against the current folder, then the config's folder, then its
        parent, and `output.run_dir` defaults to `runs/<config name>`.
    """
    import yaml

    from keras_homeostasis.lab import config as config_lib

    path = config_lib.find_config(path)
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ContinualConfigError(
                f"Could not parse {path!r} as YAML: {e}"
            ) from None
    if isinstance(raw, dict):
        for section, values in (overrides or {}).items():
            raw[section] = {**(raw.get(section) or {}), **values}
    config = validate_config(raw)
    dataset = config["data"]["dataset"]
    if dataset.endswith(".npz") or os.sep in dataset:
        config["data"]["dataset"] = config_lib.resolve_path(dataset, path)
    if config["output"]["run_dir"] is None:
        stem = os.path.splitext(os.path.basename(path))[0]
        config["output"]["run_dir"] = os.path.join("runs", stem)
    return config
