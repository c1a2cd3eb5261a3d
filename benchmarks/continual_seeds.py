"""Loss of plasticity over several seeds of a `continual` run, with its noise floor.

Reads the `results.csv` of `keras-homeostasis continual` runs that differ
only in `--seed` and prints, per method present in every file, the mean and
standard deviation over seeds of:

- online accuracy over the first and the last 10% of tasks, the best 10%
  window, and the decline (best window - last 10%, in points);
- the first and the second half of the tasks (in points apart);
- the trend: least-squares slope of online accuracy per 10 tasks (points);
- the final dead-unit percentage (mean over hidden layers);
- the **noise floor** of the decline: what a method whose accuracy does not
  change at all would show, given its per-task noise (the spread of its
  accuracies around their linear trend), by simulation. With 20 tasks the
  best of 19 two-task windows sits above the last one by about 1.2 standard
  deviations of one task, whatever the method: a decline at the floor is no
  loss of plasticity.

    python benchmarks/continual_seeds.py docs/results/continual_quick.csv \
        docs/results/continual_quick_seed1.csv docs/results/continual_quick_seed2.csv

The windows, the trend and the dead units are the continual report's own
(`keras_homeostasis.lab.continual_report`).
"""

import argparse
import csv
import statistics

import numpy as np

from keras_homeostasis.lab import continual_report as report

# Simulated flat runs per noise floor estimate.
SIMULATIONS = 20000


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def accuracies(rows, method):
    """Online accuracy per task of one method, in task order."""
    return np.array(
        [float(r["online_accuracy"]) for r in report.by_method(rows)[method]]
    )


def final_dead(rows, method):
    """Dead-unit percentage at the method's last task, mean over hidden layers."""
    return report.layer_mean(report.by_method(rows)[method][-1], "dead")


def residual_noise(values):
    """Spread of `values` around their least-squares line: the per-task noise."""
    tasks = np.arange(len(values))
    slope, intercept = np.polyfit(tasks, values, 1)
    return (values - (slope * tasks + intercept)).std(ddof=2)


def measures(values):
    """The per-seed figures of one method (accuracies as fractions)."""
    size = report.window(len(values))
    best = report.best_window(list(values), size)
    last = values[-size:].mean()
    half = len(values) // 2
    return {
        "first": values[:size].mean(),
        "last": last,
        "best": best,
        "decline": 100 * (best - last),
        "halves": 100 * (values[half:].mean() - values[:half].mean()),
        "trend": 100 * report.trend(list(values)),
        "floor": 100 * noise_floor(len(values), residual_noise(values)),
    }


def noise_floor(count, noise, seed=0):
    """Mean decline of a flat run of `count` tasks with per-task noise `noise`."""
    rng = np.random.default_rng(seed)
    size = report.window(count)
    runs = rng.normal(0.0, noise, (SIMULATIONS, count))
    kernel = np.ones(size) / size
    means = np.apply_along_axis(np.convolve, 1, runs, kernel, mode="valid")
    return float((means.max(axis=1) - means[:, -1]).mean())


def _cell(values, digits):
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(paths):
    files = [read(p) for p in paths]
    present = [report.by_method(rows) for rows in files]
    methods = [m for m in present[0] if all(m in found for found in present[1:])]
    head = [
        "method",
        "seeds",
        "first 10%",
        "last 10%",
        "best 10% window",
        "decline (points)",
        "its noise floor",
        "2nd half - 1st half",
        "trend / 10 tasks",
        "final dead %",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for method in methods:
        per_seed = [measures(accuracies(rows, method)) for rows in files]

        def cell(name, digits, per_seed=per_seed):
            return _cell([m[name] for m in per_seed], digits)

        dead = _cell([final_dead(rows, method) for rows in files], 1)
        cells = [method, str(len(files)), cell("first", 3), cell("last", 3)]
        cells += [cell("best", 3), cell("decline", 1), cell("floor", 1)]
        cells += [cell("halves", 1), cell("trend", 1), dead]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results.csv of each seed's run")
    print(table(parser.parse_args().results))


if __name__ == "__main__":
    main()
