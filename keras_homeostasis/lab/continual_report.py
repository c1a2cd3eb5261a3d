"""The report of a `continual` run: `results.md` and three plots.

From the rows of `results.csv` (one per method and task):

- `results.md`: one row per method: the mean online accuracy over the first
  and the last 10% of its finished tasks (at least one task each), the best
  mean over any window of that many consecutive tasks, the trend (the
  least-squares slope of online accuracy against task, per 10 tasks: less
  sensitive to one task's noise than the windows), and, at its last task,
  the dead-unit percentage and effective rank averaged over the hidden layers,
  and the mean wall time per task.
- `online_accuracy.png`, `dead_units.png`, `effective_rank.png`: each against
  the task number, one line per method (dead units and effective rank
  averaged over the hidden layers).
"""

import math
import os
import statistics
import time

PLOTS = {
    "online_accuracy.png": ("online accuracy", "online_accuracy"),
    "dead_units.png": ("dead units (% of hidden units)", "dead"),
    "effective_rank.png": ("effective rank (mean over hidden layers)", "erank"),
}


def layer_names(row):
    """The hidden layers of a results row (`hidden_1`, `hidden_2`, ...)."""
    names = {k[: -len("_dead")] for k in row if k.endswith("_dead")}
    return sorted(names, key=lambda name: int(name.rsplit("_", 1)[1]))


def by_method(rows):
    """`{method: rows sorted by task}`, methods in their first-seen order."""
    groups = {}
    for row in rows:
        groups.setdefault(row["method"], []).append(row)
    return {m: sorted(g, key=lambda r: int(r["task"])) for m, g in groups.items()}


def layer_mean(row, metric):
    """The mean of `hidden_<k>_<metric>` over a row's hidden layers."""
    return statistics.fmean(float(row[f"{n}_{metric}"]) for n in layer_names(row))


def window(count):
    """Tasks in 10% of `count` tasks (at least one)."""
    return max(1, math.ceil(0.1 * count))


def best_window(values, size):
    """The largest mean of `size` consecutive values."""
    return max(
        statistics.fmean(values[i : i + size]) for i in range(len(values) - size + 1)
    )


def trend(values, per=10):
    """Least-squares slope of `values` against their index, times `per`
    (None for fewer than two values)."""
    if len(values) < 2:
        return None
    slope, _ = statistics.linear_regression(range(len(values)), values)
    return per * slope


def summary(rows):
    """Per method: tasks, first/last/best 10% online accuracy, final metrics."""
    result = {}
    for method, group in by_method(rows).items():
        accuracy = [float(r["online_accuracy"]) for r in group]
        size = window(len(group))
        result[method] = {
            "tasks": len(group),
            "window": size,
            "first": statistics.fmean(accuracy[:size]),
            "last": statistics.fmean(accuracy[-size:]),
            "best": best_window(accuracy, size),
            "trend": trend(accuracy),
            "dead": layer_mean(group[-1], "dead"),
            "erank": layer_mean(group[-1], "erank"),
            "seconds": statistics.fmean(float(r["seconds"]) for r in group),
        }
    return result


def table(rows):
    """The Markdown table of `summary(rows)`."""
    head = [
        "method",
        "tasks",
        "online acc. first 10%",
        "online acc. last 10%",
        "best 10% window",
        "trend / 10 tasks",
        "final dead %",
        "final eff. rank",
        "s / task",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for method, s in summary(rows).items():
        cells = [
            method,
            str(s["tasks"]),
            f"{s['first']:.4f}",
            f"{s['last']:.4f}",
            f"{s['best']:.4f}",
            "n/a" if s["trend"] is None else f"{s['trend']:+.4f}",
            f"{s['dead']:.1f}",
            f"{s['erank']:.1f}",
            f"{s['seconds']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(rows, config):
    """The results.md text of a run."""
    data, training = config["data"], config["training"]
    widths = "-".join(str(w) for w in config["model"]["hidden"])
    lines = [
        "# Online Permuted MNIST",
        "",
        f"Data set `{data['dataset']}`, {data['examples_per_task']} examples per "
        f"task, MLP {widths}, SGD step size {training['learning_rate']}, batch "
        f"size {training['batch_size']}, seed {config['continual']['seed']}. "
        f"{len(rows)} task rows; updated {time.strftime('%Y-%m-%d %H:%M:%S')}.",
        "",
        "Online accuracy: mean over the first and the last 10% of each method's "
        "finished tasks, and the best mean over any window of that many "
        "consecutive tasks; trend: the least-squares slope of online accuracy "
        "against task, per 10 tasks. Dead units (zero on all probe images of "
        "the task) "
        "and effective rank of the post-ReLU representation of the probe "
        "images: at the last finished task, averaged over the hidden layers.",
        "",
    ]
    if rows:
        lines.append(table(rows))
    return "\n".join(lines) + "\n"


LINE_STYLES = ("-", "--", ":")
# The most methods whose legend fits inside the plot.
LEGEND_INSIDE = 6


def plot(out_dir, rows):
    """Writes the three PNG plots; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    groups = by_method(rows)
    # Past the ten colours of the cycle, methods differ by line style; many
    # methods get their legend beside the plot, where it hides no line.
    crowded = len(groups) > LEGEND_INSIDE
    for name, (label, metric) in PLOTS.items():
        size = (9.0, 4.0) if crowded else (6.4, 4.0)
        figure, axes = plt.subplots(figsize=size, dpi=100)
        for index, (method, group) in enumerate(groups.items()):
            tasks = [int(r["task"]) for r in group]
            if metric == "online_accuracy":
                values = [float(r[metric]) for r in group]
            else:
                values = [layer_mean(r, metric) for r in group]
            style = LINE_STYLES[index // 10 % len(LINE_STYLES)]
            axes.plot(tasks, values, marker=".", linestyle=style, label=method)
        axes.set_xlabel("task")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        if crowded:
            axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
        else:
            axes.legend(fontsize="small")
        figure.tight_layout()
        path = os.path.join(out_dir, name)
        figure.savefig(path)
        plt.close(figure)
        paths.append(path)
    return paths


def write_report(out_dir, rows, config):
    """Writes results.md (atomically) and the plots into `out_dir`."""
    path = os.path.join(out_dir, "results.md")
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(markdown(rows, config))
    os.replace(temporary, path)
    if rows:
        plot(out_dir, rows)
