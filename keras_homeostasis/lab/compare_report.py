"""The `results.md` summary of a comparison, from the rows of `results.csv`.

With `compare.batch_sizes` or `compare.learning_rates`, each (architecture,
optimizer) section gets pivot tables (one row per method, one column per
batch size or learning rate), the largest learning rate at which each method
trains, and the per-setting tables under "Details"; with `batch_sizes`,
`accuracy_vs_batch_size.png` beside results.md plots them.
"""

import math
import os
import statistics
import time
import warnings

from keras_homeostasis.lab import config as config_lib


def floats(rows, column):
    """The non-empty values of `column` in `rows`, as floats."""
    values = []
    for row in rows:
        text = row.get(column, "")
        if text not in ("", None):
            values.append(float(text))
    return values


def mean_std(values, digits=4):
    """`mean ± sd` (sample sd) of `values`: the mean alone for one value,
    "n/a" for none, "nan" when any is not finite."""
    finite = [v for v in values if math.isfinite(v)]
    if not values:
        return "n/a"
    if len(finite) < len(values):
        return "nan"
    mean = statistics.fmean(finite)
    if len(finite) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(finite):.{digits}f}"


def _mean(values, digits=3):
    if not values:
        return "n/a"
    if not all(math.isfinite(v) for v in values):
        return "nan"
    return f"{statistics.fmean(values):.{digits}f}"


def _epochs_to(rows):
    reached = floats(rows, "epochs_to_threshold")
    if not reached:
        return f"never (0/{len(rows)})"
    return f"{statistics.fmean(reached):.1f} ({len(reached)}/{len(rows)})"


def _step_ratio(rows, baseline):
    mine = [v for v in floats(rows, "step_ms") if math.isfinite(v)]
    base = [v for v in floats(baseline, "step_ms") if math.isfinite(v)]
    if not mine or not base:
        return "n/a"
    return f"{statistics.median(mine) / statistics.median(base):.2f}x"


def _layers(rows):
    names = []
    for column in rows[0]:
        if column.endswith("_entropy") and any(r.get(column) for r in rows):
            names.append(column[: -len("_entropy")])
    return names


def _group(rows):
    groups = {}
    for row in rows:
        key = (row["architecture"], row["optimizer"])
        groups.setdefault(key, {}).setdefault(row["method"], []).append(row)
    return groups


def _table(methods, layers, threshold):
    head = ["method", "runs", "test accuracy"]
    for name in layers:
        head += [f"{name} entropy", f"{name} CV", f"{name} dead"]
    head += [f"epochs to {threshold:.0%}", "diverged", "step time vs none"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    baseline = methods.get("none", [])
    for method, rows in methods.items():
        cells = [method, str(len(rows)), mean_std(floats(rows, "test_accuracy"))]
        for name in layers:
            for metric in ("entropy", "cv", "dead"):
                cells.append(_mean(floats(rows, f"{name}_{metric}")))
        diverged = sum(int(r["diverged"]) for r in rows)
        cells += [_epochs_to(rows), f"{diverged}/{len(rows)}"]
        cells.append(_step_ratio(rows, baseline))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(rows, config):
    """The results.md text for the rows of one comparison."""
    compare = config["compare"]
    threshold = compare["accuracy_threshold"]
    optimizers = [config_lib.optimizer_label(o) for o in compare["optimizers"]]
    lines = [
        "# Normalization comparison",
        "",
        f"Data set `{config['data']['dataset']}`, batch size "
        f"{config['data']['batch_size']}, {config['training']['epochs']} epochs, "
        f"seeds {compare['seeds']}, optimizers {optimizers}. "
        f"{len(rows)} runs; updated {time.strftime('%Y-%m-%d %H:%M:%S')}.",
        "",
        "Test accuracy: mean ± standard deviation over seeds. Usage (entropy "
        "of the normalised per-unit mean activity, 1 = balanced; CV; fraction "
        "of dead units) is measured on the test set at each hidden block's "
        "post-ReLU output, averaged over seeds. Epochs to "
        f"{threshold:.0%}: mean first epoch with test accuracy >= {threshold} "
        "over the runs that reached it (reached/runs). Step time: median time "
        "per training step relative to `none` (compilation excluded).",
    ]
    if _sweeps(config):
        lines += ["", *_sweep_intro(config)]
    for (architecture, optimizer), methods in _group(rows).items():
        lines += ["", f"## {architecture}, {optimizer}", ""]
        if _sweeps(config):
            group = [r for runs in methods.values() for r in runs]
            lines += _sweep_sections(group, config)
            continue
        layers = _layers([r for group in methods.values() for r in group])
        lines += _table(methods, layers, threshold)
    return "\n".join(lines) + "\n"


def write_markdown(path, rows, config):
    """Writes results.md (atomically: a crash never leaves half a file).

    With `compare.batch_sizes`, also `accuracy_vs_batch_size.png` beside it
    (skipped with a warning when matplotlib is missing).
    """
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(markdown(rows, config))
    os.replace(temporary, path)
    if config["compare"]["batch_sizes"] is not None and rows:
        plot = os.path.join(os.path.dirname(path), PLOT_NAME)
        try:
            write_plot(plot, rows)
        except ImportError as e:
            warnings.warn(f"{PLOT_NAME} not written: {e}", stacklevel=2)


# The batch-size and learning-rate axes (see compare.py).

PLOT_NAME = "accuracy_vs_batch_size.png"


def _sweeps(config):
    compare = config["compare"]
    return any(compare[k] is not None for k in ("batch_sizes", "learning_rates"))


def _sweep_intro(config):
    compare = config["compare"]
    lines = []
    if compare["train_examples"] is not None:
        epochs = config["training"]["epochs"]
        lines.append(
            f"Every run trains on the first {compare['train_examples']} training "
            f"examples ({epochs} {'pass' if epochs == 1 else 'passes'} over them), "
            "whatever its batch size. "
        )
    if compare["batch_sizes"] is not None:
        lines.append(
            f"Learning rate at batch size b: lr * (b / {config['data']['batch_size']})"
            f" ** k, k = {config_lib.LR_SCALING[compare['lr_scaling']]:g} "
            f"(`lr_scaling: {compare['lr_scaling']}`). "
        )
    lines.append(
        "A run trains when it did not diverge and its test accuracy is >= "
        f"{compare['accuracy_threshold']}; a setting trains when all its seeds do. "
        "Usage cells: mean usage entropy / dead fraction of the hidden layers, "
        "averaged over seeds."
    )
    return ["".join(lines)]


def _values(rows, column):
    """The distinct values of a sweep column, in increasing order."""
    if not rows or column not in rows[0]:
        return [None]
    return sorted({r[column] for r in rows}, key=float)


def _where(rows, **values):
    return [r for r in rows if all(v is None or r[c] == v for c, v in values.items())]


def _by_method(rows):
    methods = {}
    for row in rows:
        methods.setdefault(row["method"], []).append(row)
    return methods


def _pivot(rows, column, cell, prefix):
    """One row per method, one column (`prefix value`) per value of `column`."""
    values = _values(rows, column)
    head = ["method"] + [f"{prefix} {v}" for v in values]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for method, runs in _by_method(rows).items():
        cells = [cell(_where(runs, **{column: v})) for v in values]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _accuracy_cell(rows):
    if not rows:
        return "n/a"
    text = mean_std(floats(rows, "test_accuracy"), digits=3)
    diverged = sum(int(r["diverged"]) for r in rows)
    return f"{text} ({diverged}/{len(rows)} diverged)" if diverged else text


def _usage_cell(rows):
    if not rows:
        return "n/a"
    per_run = {"entropy": [], "dead": []}
    for row in rows:
        for metric, values in per_run.items():
            layer = [
                float(row[c])
                for c in row
                if c.startswith("hidden_") and c.endswith(f"_{metric}") and row[c]
            ]
            if layer:
                values.append(statistics.fmean(layer))
    return f"{_mean(per_run['entropy'])} / {_mean(per_run['dead'])}"


def _trains(rows, threshold):
    return bool(rows) and all(
        int(r["diverged"]) == 0 and float(r["test_accuracy"]) >= threshold for r in rows
    )


def _largest_trained(rows, threshold):
    rates = [
        lr
        for lr in _values(rows, "learning_rate")
        if _trains(_where(rows, learning_rate=lr), threshold)
    ]
    return rates[-1] if rates else "none"


def _sweep_sections(rows, config):
    threshold = config["compare"]["accuracy_threshold"]
    lines = []
    batches = "batch_size" in rows[0]
    rates = "learning_rate" in rows[0]
    for lr in _values(rows, "learning_rate") if batches else []:
        subset = _where(rows, learning_rate=lr)
        at = (
            f", learning rate {lr} at batch {config['data']['batch_size']}"
            if lr
            else ""
        )
        lines += [f"### Test accuracy by batch size{at}", ""]
        lines += _pivot(subset, "batch_size", _accuracy_cell, "batch")
        lines += ["", f"Learning rate per batch size: {_effective(subset)}.", ""]
        lines += [f"![Test accuracy against batch size]({PLOT_NAME})", ""]
        lines += [f"### Usage (entropy / dead) by batch size{at}", ""]
        lines += _pivot(subset, "batch_size", _usage_cell, "batch")
        lines.append("")
    if rates:
        lines += _rate_sections(rows, threshold, batches)
    lines += ["### Details", ""]
    for batch in _values(rows, "batch_size"):
        for lr in _values(rows, "learning_rate"):
            subset = _where(rows, batch_size=batch, learning_rate=lr)
            if not subset:
                continue
            title = ", ".join(
                f"{name} {v}"
                for name, v in (("batch size", batch), ("learning rate", lr))
                if v is not None
            )
            lines += [f"#### {title}", ""]
            lines += _table(_by_method(subset), _layers(subset), threshold)
            lines.append("")
    return lines[:-1]


def _rate_sections(rows, threshold, batches):
    lines = [
        "### Largest learning rate at which each method trains",
        "",
        f"(every seed without divergence and with test accuracy >= {threshold})",
        "",
    ]
    if batches:

        def cell(runs):
            return str(_largest_trained(runs, threshold))

        lines += _pivot(rows, "batch_size", cell, "batch")
    else:
        lines += ["| method | largest learning rate |", "| --- | --- |"]
        for method, runs in _by_method(rows).items():
            lines.append(f"| {method} | {_largest_trained(runs, threshold)} |")
    lines.append("")
    for batch in _values(rows, "batch_size"):
        at = f", batch size {batch}" if batch else ""
        lines += [f"### Test accuracy by learning rate{at}", ""]
        subset = _where(rows, batch_size=batch)
        lines += _pivot(subset, "learning_rate", _accuracy_cell, "lr")
        lines.append("")
    return lines


def _effective(rows):
    pairs = {}
    for row in rows:
        pairs.setdefault(row["batch_size"], row.get("effective_learning_rate", ""))
    return ", ".join(f"{b}: {pairs[b]}" for b in sorted(pairs, key=float))


def write_plot(path, rows):
    """Test accuracy against batch size (log2), a line per method, a panel per
    (architecture, optimizer, learning rate); written atomically."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(
            "The batch-size plot needs matplotlib: pip install matplotlib"
        ) from e
    panels = {}
    for row in rows:
        key = (row["architecture"], row["optimizer"], row.get("learning_rate"))
        panels.setdefault(key, []).append(row)
    columns = min(3, len(panels))
    rows_ = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(
        rows_, columns, figsize=(7 * columns, 3.8 * rows_), squeeze=False
    )
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, ((architecture, optimizer, lr), panel) in zip(axes.flat, panels.items()):
        _plot_panel(ax, panel)
        title = f"{architecture}, {optimizer}" + (f", lr {lr}" if lr else "")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    temporary = f"{path}.tmp.png"
    # "tight": the legends sit beside their panels, outside the axes.
    fig.savefig(temporary, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(temporary, path)


# Matplotlib's default cycle has 10 colours: the next ten methods are drawn
# dashed with square markers, so no two lines look the same.
LINE_STYLES = [("-", "o"), ("--", "s"), (":", "^")]


def _plot_panel(ax, rows):
    batches = _values(rows, "batch_size")
    for index, (method, runs) in enumerate(_by_method(rows).items()):
        linestyle, marker = LINE_STYLES[index // 10 % len(LINE_STYLES)]
        xs, means, stds = [], [], []
        for batch in batches:
            accuracies = [
                v
                for v in floats(_where(runs, batch_size=batch), "test_accuracy")
                if math.isfinite(v)
            ]
            if accuracies:
                xs.append(int(batch))
                means.append(statistics.fmean(accuracies))
                spread = len(accuracies) > 1
                stds.append(statistics.stdev(accuracies) if spread else 0.0)
        ax.errorbar(
            xs,
            means,
            yerr=stds,
            marker=marker,
            linestyle=linestyle,
            capsize=3,
            label=method,
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks([int(b) for b in batches], [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    # Beside the panel, where it covers no curve.
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
