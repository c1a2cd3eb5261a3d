"""What the homeostasis summaries store, shared by the writer and the plugin.

One summary per layer and logged step, tag = the layer name. Its tensor is a
float32 vector packing, for a layer of `n` units (version 2):

    [a_1..a_n, s_1..s_n, t_1..t_n, r_1..r_n, d_1..d_n,
     entropy, cv, dead_fraction, 2.0]

`a` is each unit's mean |activity|, `s` its cumulative scale factor (1 for
layers that are not scaled; for a layer whose rule holds each unit's
kernel norm, `hold_norms=True` or `scale_invariant=True`, that norm), `t`
the set point (a scalar target is repeated
`n` times), `r` its firing rate (fraction of positive pre-activations, or
of positive outputs for probed layers), `d` the spread (standard deviation)
of its pre-activation, NaN where not measured; then three layer statistics
and the layout version. The `plugin_data.content` of the summary metadata is
a small JSON object: `{"version": 2, "units": n, "scaled": bool,
"factor": "scale" | "norm"}` (`"norm"`: `s` is the held kernel norm;
absent in runs written before it, read as `"scale"`).

Version 1 (runs written before the firing rate and spread were logged) is
`[a, s, t, entropy, cv, dead_fraction]`, `3n + 3` values. Each vector says
its own layout, since a run folder may hold both: a version 2 vector ends
with 2.0, a version 1 vector with its dead fraction, which is in [0, 1].
The plugin reads both; a version 1 vector reads as NaN rates and spreads.
"""

import json

import numpy as np

PLUGIN_NAME = "homeostasis"

# Bumped when the tensor layout changes; the plugin ignores newer versions.
VERSION = 2
READABLE_VERSIONS = (1, 2)

STATISTICS = ("entropy", "cv", "dead_fraction")
# What the `s` field holds: a cumulative factor, or the held kernel norm.
FACTOR_KINDS = ("scale", "norm")
# Per-unit fields of each layout, in their packed order.
UNIT_FIELDS = {
    1: ("activity", "factor", "target"),
    2: ("activity", "factor", "target", "firing_rate", "spread"),
}


def packed_length(units, version=VERSION):
    """Length of the packed vector of a layer of `units` units."""
    marker = 0 if version == 1 else 1
    return len(UNIT_FIELDS[version]) * units + len(STATISTICS) + marker


def layout_of(value):
    """`(version, units)` of a packed vector, or None if it is not one."""
    value = np.asarray(value)
    if value.ndim != 1 or value.dtype.kind != "f" or value.shape[0] < 1:
        return None
    last = float(value[-1])
    if last == VERSION:
        version = VERSION
    elif 0.0 <= last <= 1.0:  # A dead fraction: the version 1 layout.
        version = 1
    else:
        return None
    fields = len(UNIT_FIELDS[version])
    extra = value.shape[0] - packed_length(0, version)
    if extra <= 0 or extra % fields:
        return None
    return version, extra // fields


def units_of(value):
    """The number of units of a packed vector, or None if it is not one."""
    layout = layout_of(value)
    return None if layout is None else layout[1]


def content(units, scaled, factor="scale"):
    """The `plugin_data.content` bytes for a layer of `units` units whose
    `s` field is of kind `factor` (`FACTOR_KINDS`)."""
    return json.dumps(
        {
            "version": VERSION,
            "units": int(units),
            "scaled": bool(scaled),
            "factor": factor,
        }
    ).encode("utf-8")


def parse_content(raw):
    """Decodes `plugin_data.content`; raises `ValueError` when unusable."""
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, AttributeError) as error:
        raise ValueError(f"Unreadable homeostasis metadata: {raw[:80]!r}") from error
    if not isinstance(parsed, dict) or parsed.get("version") not in READABLE_VERSIONS:
        raise ValueError(f"Unsupported homeostasis metadata: {parsed!r}")
    units = parsed.get("units")
    if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        raise ValueError(f"Invalid unit count in homeostasis metadata: {parsed!r}")
    factor = parsed.get("factor", "scale")
    return {
        "units": units,
        "scaled": bool(parsed.get("scaled", False)),
        "factor": factor if factor in FACTOR_KINDS else "scale",
    }


def pack(activity, factor, target, statistics, firing_rate=None, spread=None):
    """The float32 vector stored for one layer and step (the current layout).

    `firing_rate` and `spread` default to NaN (not measured).
    """
    activity = np.asarray(activity, "float32").reshape(-1)
    unmeasured = np.full(activity.shape, np.nan, "float32")
    parts = [activity, factor, target]
    parts += [unmeasured if x is None else x for x in (firing_rate, spread)]
    parts += [statistics, [VERSION]]
    return np.concatenate([np.asarray(x, "float32").reshape(-1) for x in parts])


def upgrade(value):
    """A packed vector of any readable layout, in the current layout."""
    version, units = layout_of(value)
    if version == VERSION:
        return np.asarray(value, "float32")
    old = unpack(np.asarray(value, "float32")[None, :], units)
    statistics = [old[name][0] for name in STATISTICS]
    return pack(old["activity"], old["factor"], old["target"], statistics)


def unpack(rows, units):
    """Splits packed rows `[T, length]` of one layout into a dict of arrays.

    Per-unit fields are `[T, n]`, statistics `[T]`. Rows of the version 1
    layout have no firing rate or spread: those are NaN.
    """
    n = units
    version = 1 if rows.shape[1] == packed_length(n, 1) else VERSION
    fields = UNIT_FIELDS[version]
    split = {name: rows[:, k * n : (k + 1) * n] for k, name in enumerate(fields)}
    for name in UNIT_FIELDS[VERSION][len(fields) :]:
        split[name] = np.full((rows.shape[0], n), np.nan, "float32")
    for k, name in enumerate(STATISTICS):
        split[name] = rows[:, len(fields) * n + k]
    return split
