"""How much each normalization raises load balance over none, from a comparison.

Reads the `results.csv` of one or more `keras-homeostasis compare` runs of
the same model (rows of a run without `none` are measured against another
run's) and prints, per optimizer and method, the mean usage entropy of
every hidden layer and the share of the gap to perfect balance that the
method closes over no normalization: (H_method - H_none) / (1 - H_none),
averaged over layers and seeds.

    python benchmarks/balance_gain.py docs/results/mnist_mlp.csv
    python benchmarks/balance_gain.py docs/results/mnist_mlp.csv \
        docs/results/mnist_mlp_centered.csv
"""

import argparse
import csv
import statistics


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def entropy_columns(rows):
    return sorted(c for c in rows[0] if c.endswith("_entropy"))


def mean_entropies(rows, columns):
    """{(optimizer, method): [mean entropy per layer]}."""
    groups = {}
    for row in rows:
        groups.setdefault((row["optimizer"], row["method"]), []).append(row)
    return {
        key: [statistics.mean(float(r[c]) for r in group) for c in columns]
        for key, group in groups.items()
    }


def table(*paths):
    rows = [row for path in paths for row in read(path)]
    columns = entropy_columns(rows)
    means = mean_entropies(rows, columns)
    layers = [c[: -len("_entropy")] for c in columns]
    lines = [
        "| optimizer | method | "
        + " | ".join(f"{x} entropy" for x in layers)
        + " | gap to balance closed vs none |",
        "| --- | --- | " + " | ".join("---" for _ in layers) + " | --- |",
    ]
    for (optimizer, method), values in sorted(means.items()):
        none = means.get((optimizer, "none"))
        shares = [(v - n) / (1.0 - n) for v, n in zip(values, none)] if none else []
        share = f"{100 * statistics.mean(shares):.0f}%" if shares else "-"
        cells = " | ".join(f"{v:.3f}" for v in values)
        lines.append(f"| {optimizer} | {method} | {cells} | {share} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results.csv of a comparison")
    print(table(*parser.parse_args().results))


if __name__ == "__main__":
    main()
