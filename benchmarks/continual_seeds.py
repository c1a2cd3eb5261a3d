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

    python benchmarks/continual_seeds.py docs/results/continual_quick*.csv
"""

import argparse
import csv
import statistics

import numpy as np

# Simulated flat runs per noise floor estimate.
SIMULATIONS = 20000


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def accuracies(rows, method):
    """Online accuracy per task of one method, in task order."""
    mine = sorted(
        (r for r in rows if r["method"] == method), key=lambda r: int(r["task"])
    )
    return np.array([float(r["online_accuracy"]) for r in mine])


def final_dead(rows, method):
    last = max((r for r in rows if r["method"] == method), key=lambda r: int(r["task"]))
    columns = [c for c in last if c.endswith("_dead")]
    return statistics.fmean(float(last[c]) for c in columns)


def window(count):
    """Tasks in 10% of `count` tasks (at least one), as the report counts them."""
    return max(1, -(-count // 10))


def decline(values, size):
    """Best mean of `size` consecutive values minus the mean of the last `size`."""
    kernel = np.ones(size) / size
    means = np.convolve(values, kernel, mode="valid")
    return means.max() - means[-1]


def measures(values):
    """The per-seed figures of one method (accuracies as fractions)."""
    size = window(len(values))
    tasks = np.arange(len(values))
    slope, intercept = np.polyfit(tasks, values, 1)
    residual = values - (slope * tasks + intercept)
    half = len(values) // 2
    return {
        "first": values[:size].mean(),
        "last": values[-size:].mean(),
        "best": np.convolve(values, np.ones(size) / size, mode="valid").max(),
        "decline": 100 * decline(values, size),
        "halves": 100 * (values[half:].mean() - values[:half].mean()),
        "trend": 1000 * slope,
        "floor": 100 * noise_floor(len(values), residual.std(ddof=2)),
    }


def noise_floor(count, noise, seed=0):
    """Mean decline of a flat run of `count` tasks with per-task noise `noise`."""
    rng = np.random.default_rng(seed)
    size = window(count)
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
    methods = [m for m in dict.fromkeys(r["method"] for r in files[0])]
    methods = [
        m for m in methods if all(any(r["method"] == m for r in f) for f in files)
    ]
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
