"""The `continual` command's config: its schema, validation and loading.

A config has the sections `data`, `model`, `training`, `continual`,
`scaling` and `output` (every key in docs/configs.md); an unknown key or a
bad value raises `ContinualConfigError` naming its path and value. The
benchmark itself is in `keras_homeostasis.lab.continual`.
"""

import os

from keras_homeostasis import settings as settings_lib
from keras_homeostasis.lab import config_schema as schema
from keras_homeostasis.validation import check_known_keys

METHODS = (
    "backprop",
    "l2",
    "shrink_and_perturb",
    "batchnorm",
    "layernorm",
    "scaling",
    "centered_scaling",
    "centered_offsets_scaling",
    "held_scaling",
    "held_centered_scaling",
    "scale_invariant_layers",
    "centered_layers",
    "centered_scale_invariant_layers",
)


class ContinualConfigError(schema.ConfigError):
    """A `continual` config with an unknown key or a bad value."""


# ----------------------------------------------------------------------------
# The config: its schema, defaults and validation.


def fail(path, expected, value):
    """Raises `ContinualConfigError` naming the key, what it expects and its value."""
    raise ContinualConfigError(
        f"Invalid config value for `{path}`, expected {expected}. "
        f"Received: {path}={value!r}"
    )


# The values are checked by the experiment configs' validators; their
# `ConfigError` is raised again as `ContinualConfigError` (`_checked`).
_positive_number = schema.number(0.0, low_open=True)
_non_negative_number = schema.number(0.0)
_widths = schema.list_of(schema.integer(1))
_methods = schema.list_of(schema.choice(METHODS), unique=True)


def _optional_text(path, value):
    return None if value is None else schema.text(path, value)


def _checked(path, check, value):
    try:
        return check(path, value)
    except schema.ConfigError as e:
        raise ContinualConfigError(str(e)) from None


SCHEMA = {
    "data": {
        "dataset": ("mnist", schema.text),
        "examples_per_task": (60000, schema.integer(1)),
        "probe_examples": (2000, schema.integer(1)),
    },
    "model": {"hidden": ([2000, 2000, 2000], _widths)},
    "training": {
        "learning_rate": (0.003, _positive_number),
        "batch_size": (1, schema.integer(1)),
        "steps_per_execution": (250, schema.integer(1)),
        "jit_compile": (True, schema.boolean()),
    },
    "continual": {
        "tasks": (800, schema.integer(1)),
        "methods": (list(METHODS), _methods),
        "seed": (0, schema.integer(0)),
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
            key: _checked(f"{section}.{key}", check, values[key])
            if key in values
            else default
            for key, (default, check) in keys.items()
        }
    if config["data"]["probe_examples"] > config["data"]["examples_per_task"]:
        fail(
            "data.probe_examples",
            f"at most `data.examples_per_task` ({config['data']['examples_per_task']})",
            config["data"]["probe_examples"],
        )
    return config


# Keys of the `scaling` section that are not rule settings: the callback's
# `layers`, and the scale-invariant layers' `norm_relaxation`.
SCALING_EXTRA_KEYS = ("layers", "norm_relaxation")


def _scaling(values):
    allowed = [*settings_lib.DEFAULTS, *settings_lib.LEGACY, *SCALING_EXTRA_KEYS]
    check_known_keys(values, allowed, "config key", "scaling", ContinualConfigError)
    values = dict(values)
    if "norm_relaxation" in values:
        check = schema.number(0.0, 1.0)
        path = "scaling.norm_relaxation"
        values["norm_relaxation"] = _checked(path, check, values["norm_relaxation"])
    settings = {k: v for k, v in values.items() if k not in SCALING_EXTRA_KEYS}
    try:
        settings_lib.validate_settings(**settings)
    except (TypeError, ValueError) as e:
        raise ContinualConfigError(f"Invalid config section `scaling`: {e}") from None
    return values


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
