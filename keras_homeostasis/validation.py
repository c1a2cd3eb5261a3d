"""Checks shared by the validators of settings, search spaces and configs."""


def check_known_keys(mapping, allowed, kind, path=None, error=ValueError):
    """Raises `error` naming the first key of `mapping` that is not `allowed`.

    The message names the key by its path and lists the allowed keys, e.g.
    "Unknown config key `training.epoch`. Allowed keys in `training`: [...]"
    for `kind="config key"` and `path="training"`.

    Args:
        mapping: the mapping whose keys are checked (keys compared as text).
        allowed: the allowed keys.
        kind: what a key is, for the message (`"config key"`); its last word,
            made plural, names the allowed ones.
        path: where `mapping` sits (`"training"`), or None at the top.
        error: the exception class raised (a `ValueError` subclass).
    """
    unknown = sorted(set(map(str, mapping)) - set(map(str, allowed)))
    if not unknown:
        return
    name = unknown[0] if path is None else f"{path}.{unknown[0]}"
    where = "" if path is None else f" in `{path}`"
    plural = kind.split()[-1] + "s"
    raise error(f"Unknown {kind} `{name}`. Allowed {plural}{where}: {sorted(allowed)}")


def positive_int(name, value):
    """`value` if it is a positive integer (not a bool); else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected a positive "
            f"integer. Received: {name}={value!r}"
        )
    return value


def validate_flag(name, value):
    """`value` if it is True or False; else a ValueError naming it."""
    if not isinstance(value, bool):
        raise ValueError(
            f"Received an invalid value for `{name}`, expected True or False. "
            f"Received: {name}={value!r}"
        )
    return value
