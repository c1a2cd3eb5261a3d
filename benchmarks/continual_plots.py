"""The three continual plots (online accuracy, dead units, effective rank
against task) of several `continual` runs in one figure each.

Each argument is `CSV` or `CSV=LABEL`; a label replaces the method names of
that file (for runs of one method with other settings, e.g. a relaxed
`scale_invariant_layers`). The README's 120-task plots:

    R=docs/results/continual_quick_long
    python benchmarks/continual_plots.py --out docs/images \\
        --prefix continual_long_ $R.csv \\
        "${R}_relaxed.csv=scale_invariant_layers, relaxed" ${R}_centered.csv
"""

import argparse
import csv
import os
import shutil
import tempfile

from keras_homeostasis.lab import continual_report


def labelled_rows(spec):
    """The rows of `CSV` or `CSV=LABEL` (every method renamed LABEL)."""
    path, _, label = spec.partition("=")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if label:
        rows = [{**row, "method": label} for row in rows]
    return rows


def draw(specs, out_dir, prefix=""):
    """Writes the three plots of every spec's rows; returns their paths."""
    rows = [row for spec in specs for row in labelled_rows(spec)]
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    with tempfile.TemporaryDirectory() as scratch:
        for drawn in continual_report.plot(scratch, rows):
            path = os.path.join(out_dir, prefix + os.path.basename(drawn))
            shutil.move(drawn, path)
            paths.append(path)
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="CSV or CSV=LABEL")
    parser.add_argument("--out", default=".")
    parser.add_argument("--prefix", default="")
    args = parser.parse_args()
    for path in draw(args.results, args.out, args.prefix):
        print(path)


if __name__ == "__main__":
    main()
