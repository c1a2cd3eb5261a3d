"""What the homeostasis summaries store, shared by the writer and the plugin.

One summary per layer and logged step, tag = the layer name. Its tensor is a
float32 vector packing, for a layer of `n` units:

    [a_1 .. a_n, s_1 .. s_n, t_1 .. t_n, entropy, cv, dead_fraction]

`a` is each unit's mean |activity|, `s` its cumulative scale factor (1 for
layers that are not scaled), `t` the set point (a scalar target is repeated
`n` times), then three layer statistics. The `plugin_data.content` of the
summary metadata is a small JSON object: `{"version": 1, "units": n,
"scaled": bool}`, which lets the plugin check each tensor's length.
"""

import json

import numpy as np

PLUGIN_NAME = "homeostasis"

# Bumped when the tensor layout changes; the plugin ignores newer versions.
VERSION = 1

STATISTICS = ("entropy", "cv", "dead_fraction")


def packed_length(units):
    """Length of the packed vector of a layer of `units` units."""
    return 3 * units + len(STATISTICS)


def units_of(value):
    """The number of units of a packed vector, or None if it is not one."""
    value = np.asarray(value)
    extra = value.shape[0] - len(STATISTICS) if value.ndim == 1 else -1
    if value.dtype.kind != "f" or extra <= 0 or extra % 3:
        return None
    return extra // 3


def content(units, scaled):
    """The `plugin_data.content` bytes for a layer of `units` units."""
    return json.dumps(
        {"version": VERSION, "units": int(units), "scaled": bool(scaled)}
    ).encode("utf-8")


def parse_content(raw):
    """Decodes `plugin_data.content`; raises `ValueError` when unusable."""
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, AttributeError) as error:
        raise ValueError(f"Unreadable homeostasis metadata: {raw[:80]!r}") from error
    if not isinstance(parsed, dict) or parsed.get("version") != VERSION:
        raise ValueError(f"Unsupported homeostasis metadata: {parsed!r}")
    units = parsed.get("units")
    if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        raise ValueError(f"Invalid unit count in homeostasis metadata: {parsed!r}")
    return {"units": units, "scaled": bool(parsed.get("scaled", False))}


def pack(activity, factor, target, statistics):
    """The float32 vector stored for one layer and step."""
    return np.concatenate(
        [
            np.asarray(activity, "float32").reshape(-1),
            np.asarray(factor, "float32").reshape(-1),
            np.asarray(target, "float32").reshape(-1),
            np.asarray(statistics, "float32").reshape(-1),
        ]
    )


def unpack(rows, units):
    """Splits packed rows `[T, 3n+3]` into a dict of `[T, n]` / `[T]` arrays."""
    n = units
    split = {
        "activity": rows[:, :n],
        "factor": rows[:, n : 2 * n],
        "target": rows[:, 2 * n : 3 * n],
    }
    for k, name in enumerate(STATISTICS):
        split[name] = rows[:, 3 * n + k]
    return split
