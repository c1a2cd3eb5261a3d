"""The `results.md` summary of a comparison, from the rows of `results.csv`."""

import math
import os
import statistics
import time

from keras_homeostasis.lab import config as config_lib


def _floats(rows, column):
    values = []
    for row in rows:
        text = row.get(column, "")
        if text not in ("", None):
            values.append(float(text))
    return values


def _mean_std(values, digits=4):
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
    reached = _floats(rows, "epochs_to_threshold")
    if not reached:
        return f"never (0/{len(rows)})"
    return f"{statistics.fmean(reached):.1f} ({len(reached)}/{len(rows)})"


def _step_ratio(rows, baseline):
    mine = [v for v in _floats(rows, "step_ms") if math.isfinite(v)]
    base = [v for v in _floats(baseline, "step_ms") if math.isfinite(v)]
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
        cells = [method, str(len(rows)), _mean_std(_floats(rows, "test_accuracy"))]
        for name in layers:
            for metric in ("entropy", "cv", "dead"):
                cells.append(_mean(_floats(rows, f"{name}_{metric}")))
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
    for (architecture, optimizer), methods in _group(rows).items():
        layers = _layers([r for group in methods.values() for r in group])
        lines += ["", f"## {architecture}, {optimizer}", ""]
        lines += _table(methods, layers, threshold)
    return "\n".join(lines) + "\n"


def write_markdown(path, rows, config):
    """Writes results.md (atomically: a crash never leaves half a file)."""
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(markdown(rows, config))
    os.replace(temporary, path)
