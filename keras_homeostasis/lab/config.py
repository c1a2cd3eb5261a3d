"""Experiment configs: YAML files validated against one schema.

`SCHEMA` (in `config_schema`) is the single place where every key, its
default and its meaning are defined (`docs/configs.md` documents the same
keys). Unknown keys and wrong types raise `ConfigError` naming the key by its path, e.g.
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
import os
import warnings

from keras_homeostasis.lab.config_schema import LR_SCALING  # noqa: F401 (re-exported)
from keras_homeostasis.lab.config_schema import SCALING_DEFAULTS  # noqa: F401 (re-exported)
from keras_homeostasis.lab.config_schema import SCALING_EXTRA_KEYS
from keras_homeostasis.lab.config_schema import SCHEMA
from keras_homeostasis.lab.config_schema import ConfigError
from keras_homeostasis.lab.config_schema import optimizer_section
from keras_homeostasis.lab.config_schema import validate_section
from keras_homeostasis.lab.data import CHOICES as DATASET_CHOICES
from keras_homeostasis.settings import LEGACY as SCALING_LEGACY
from keras_homeostasis.settings import validate_settings
from keras_homeostasis.validation import check_known_keys


def defaults():
    """The full default config (a fresh copy)."""
    return {
        section: {name: copy.deepcopy(key.default) for name, key in keys.items()}
        for section, keys in SCHEMA.items()
    }


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
        name: validate_section({} if raw.get(name) is None else raw[name], keys, name)
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
