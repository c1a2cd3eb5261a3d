"""Server-side downsampling of the plugin's views (pure numpy).

Each function takes one layer's series (`steps[T]` and `[T, n]` arrays, as
unpacked by `metadata.unpack`) and returns a JSON-ready dict whose size is
bounded whatever the run's length and the layer's width:

- heatmap: at most `MAX_HEATMAP_STEPS x MAX_HEATMAP_ROWS` small integers;
- sorted curve: at most `MAX_CURVE_POINTS` ranks, activities and targets;
- quantile bands (scale factor, firing rate, pre-activation spread):
  `len(QUANTILES) x MAX_SERIES_STEPS` numbers each;
- statistics: `3 x MAX_SERIES_STEPS` numbers.

Steps are thinned by picking evenly spaced logged steps (first and last
kept); units by sorting them and averaging consecutive ranks (heatmap) or
picking evenly spaced ranks (sorted curve). Non-finite numbers become null.
"""

import numpy as np

MAX_HEATMAP_STEPS = 500
MAX_HEATMAP_ROWS = 256
MAX_CURVE_POINTS = 1024
MAX_SERIES_STEPS = 1000
DEFAULTS = {"heatmap_steps": 200, "heatmap_rows": 128, "curve_points": 256}

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)

# Heatmap cells are log2(a_i / layer mean) in tenths, clipped to +-HEATMAP_CLIP.
HEATMAP_CLIP = 60


def pick(count, limit):
    """Indices of at most `limit` evenly spaced items among `count`."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, limit)).astype(int))


def rounded(values, digits=4):
    """A list of floats with `digits` significant digits; NaN/inf -> None."""
    return [
        float(f"{v:.{digits}g}") if np.isfinite(v) else None
        for v in np.asarray(values, "float64").reshape(-1)
    ]


def heatmap(steps, activity, max_steps, max_rows):
    """Unit activity over steps, units sorted by mean relative activity."""
    columns = pick(len(steps), max_steps)
    a = np.asarray(activity[columns], "float64")
    mean = np.mean(a, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = a / mean
    usable = np.isfinite(ratio)
    mean_ratio = np.where(usable, ratio, 0.0).sum(0) / np.maximum(usable.sum(0), 1)
    order = np.argsort(-mean_ratio, kind="stable")
    rows = _rank_bins(ratio[:, order], max_rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        tenths = np.round(10.0 * np.log2(rows))
    usable = np.isfinite(tenths)
    cells = np.clip(np.where(usable, tenths, 0), -HEATMAP_CLIP, HEATMAP_CLIP)
    values = cells.astype(int).T.tolist()
    for r, row in enumerate(usable.T):
        if not row.all():
            values[r] = [v if ok else None for v, ok in zip(values[r], row)]
    return {
        "steps": steps[columns].tolist(),
        "units": activity.shape[1],
        "rows": len(values),
        "layer_mean": rounded(mean),
        "encoding": "log2(activity / layer mean) * 10, null = silent",
        "clip": HEATMAP_CLIP,
        "values": values,
    }


def _rank_bins(sorted_values, max_rows):
    """Averages consecutive units so that at most `max_rows` remain."""
    n = sorted_values.shape[1]
    if n <= max_rows:
        return sorted_values
    edges = np.round(np.linspace(0, n, max_rows + 1)).astype(int)
    clean = np.where(np.isfinite(sorted_values), sorted_values, 0.0)
    sums = np.add.reduceat(clean, edges[:-1], axis=1)
    return sums / np.diff(edges)


def sorted_curve(steps, activity, target, step, max_points):
    """Per-unit activity at the logged step nearest `step`, most used first."""
    index = len(steps) - 1 if step is None else int(np.argmin(np.abs(steps - step)))
    a = np.asarray(activity[index], "float64")
    order = np.argsort(-np.where(np.isfinite(a), a, -np.inf), kind="stable")
    ranks = pick(len(order), max_points)
    return {
        "step": int(steps[index]),
        "first_step": int(steps[0]),
        "last_step": int(steps[-1]),
        "units": len(a),
        "ranks": ranks.tolist(),
        "activity": rounded(a[order][ranks]),
        "target": rounded(np.asarray(target[index], "float64")[order][ranks]),
    }


def factor_bands(steps, factor, max_steps):
    """Quantiles of the units' scale factors at evenly spaced steps."""
    return quantile_bands(steps, factor, max_steps)


def quantile_bands(steps, values, max_steps):
    """Quantiles over units of a per-unit series `[T, n]` at evenly spaced steps.

    `measured` is False when no value is finite: a run that did not log the
    series (written before it existed, or a probe that cannot see it).
    """
    columns = pick(len(steps), max_steps)
    picked = np.asarray(values[columns], "float64")
    bands = row_quantiles(picked, QUANTILES)
    return {
        "steps": steps[columns].tolist(),
        "units": values.shape[1],
        "quantiles": list(QUANTILES),
        "bands": [rounded(band) for band in bands],
        "measured": bool(np.isfinite(picked).any()),
    }


def row_quantiles(values, quantiles):
    """`[len(quantiles), rows]` quantiles of each row's finite values (else NaN).

    Linear interpolation, as `np.quantile`; much faster than `np.nanquantile`
    on a few hundred rows of a thousand units.
    """
    finite = np.isfinite(values)
    ordered = np.sort(np.where(finite, values, np.inf), axis=1)
    count = finite.sum(axis=1)
    position = np.outer(quantiles, np.maximum(count - 1, 0))
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, np.maximum(count - 1, 0))
    rows = np.arange(values.shape[0])
    weight = position - low
    below, above = ordered[rows, low], ordered[rows, high]
    with np.errstate(invalid="ignore"):  # inf - inf where a row has no data.
        result = below + weight * np.where(weight > 0, above - below, 0.0)
    return np.where(count > 0, result, np.nan)


def statistics(steps, series, max_steps):
    """Usage entropy, CV and dead fraction at evenly spaced steps."""
    columns = pick(len(steps), max_steps)
    return {
        "steps": steps[columns].tolist(),
        **{name: rounded(series[name][columns]) for name in series},
    }
