"""What centering costs: whole `fit` epochs of the centered layers beside
the layers without it, BatchNorm and no normalization, in the same run.

Each pass of a centered layer adds its inputs to the mean's trace (one
reduction over the batch) and moves the bias by the kernel times the mean's
change (one vector-matrix product); `keras-homeostasis bench` does not
offer these layers, so this uses its timing code (`lab.bench_timing`:
rotated order, epochs after the first, wall and process CPU time, ratios
to no normalization) on two of its cases:

- `batch`: the MLP 784-256x3-10, batch 128, SGD with momentum 0.9;
- `online`: the MLP 784-100x3-10, batch 1, 250 steps per compiled call,
  XLA, plain SGD (online and continual learning).

    python benchmarks/centered_cost.py            # about 5 minutes on 2 cores
    python benchmarks/centered_cost.py --rounds 5 --steps 150 --online-steps 5000
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_homeostasis.lab import bench_cases as bc  # noqa: E402
from keras_homeostasis.lab import bench_timing  # noqa: E402

VARIANTS = (
    "none",
    "batchnorm",
    "homeostatic_layers",
    "scale_invariant_layers",
    "centered_layers",
    "centered_scale_invariant_layers",
)
# BatchNormalization at batch size 1 normalizes each unit to its offset.
ONLINE_VARIANTS = tuple(v for v in VARIANTS if v != "batchnorm")
SETTINGS = ("batch", "online")
ONLINE_OPTIONS = {
    "jit_compile": True,
    "steps_per_execution": bc.ONLINE_STEPS_PER_EXECUTION,
    "momentum": 0.0,
}


def measure(rounds, epochs, steps, online_steps, settings=SETTINGS, log=print):
    """Rows of the `settings` cases: one per variant, with wall and CPU
    ratios."""
    rows = []
    plans = {
        "batch": (bc.HEADLINE, VARIANTS, steps, {}),
        "online": (bc.ONLINE_CASE, ONLINE_VARIANTS, online_steps, ONLINE_OPTIONS),
    }
    for name in settings:
        case, variants, case_steps, options = plans[name]
        bench_timing.warm_up(**options)
        found = bench_timing.measure_case(
            case, variants, rounds, epochs, case_steps, **options
        )
        rows.extend({"setting": name, **row} for row in found)
        log(f"  {name}: {bc.case_label(case)} done")
    return rows


def table(rows):
    """Markdown: wall / CPU time per epoch over no normalization."""
    lines = [
        "| setting | method | wall / CPU over none | ms per step |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['setting']} | {row['variant']} | "
            f"{row['ratio_wall']:.2f} / {row['ratio_cpu']:.2f} | "
            f"{row['step_ms']:.3f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--online-steps", type=int, default=1000)
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=SETTINGS)
    args = parser.parse_args()
    rows = measure(
        args.rounds, args.epochs, args.steps, args.online_steps, args.settings
    )
    print(table(rows))


if __name__ == "__main__":
    main()
