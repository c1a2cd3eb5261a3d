"""Scaling's settings at batch size 1 with a step that kills a plain network's units.

Runs `configs/compare_online_lr.yaml` (MNIST MLP 784-256-256-10, SGD with
momentum 0.9, one pass over 6,000 images at batch size 1) for scaling alone
at one learning rate, once per settings variant (each a `scaling:` section
of the config), and prints one table row per variant: test accuracy over
the seeds, the hidden layers' dead fractions and usage entropies. Each
variant is a `keras-homeostasis compare` run in its own folder under
`--out`, so an interrupted run resumes. Reproduces the settings table of
the README ("Online and continual learning") and of docs/design.md.

    python benchmarks/online_lr_settings.py [--lr 0.01] [--seeds 0 1 2 3 4]
        [--variants defaults anchor0 ...] [--out runs/online_lr_settings]

About 15 s per run on 2 CPU cores (5 seeds x 10 variants: 12 minutes).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_homeostasis.lab import compare  # noqa: E402
from keras_homeostasis.lab import compare_report  # noqa: E402
from keras_homeostasis.lab import config as config_lib  # noqa: E402
from keras_homeostasis.lab import train  # noqa: E402

CONFIG = "configs/compare_online_lr.yaml"

# name: (what the table calls it, the scaling section).
VARIANTS = {
    "defaults": ("defaults", {}),
    "anchor0": ("`anchor: 0`", {"anchor": 0.0}),
    "no_set_point": ("`target_std: null`", {"target_std": None}),
    "target_rate": ("`target_rate: 0.3`", {"target_rate": 0.3}),
    "firing_held": (
        "`target_rate: 0.3, anchor: 1` (firing rate held)",
        {"target_rate": 0.3, "anchor": 1.0},
    ),
    "target_std_small": ("`target_std: 0.3`", {"target_std": 0.3}),
    "slow_rates": ("`rate: 0.01, bias_rate: 0.01`", {"rate": 0.01, "bias_rate": 0.01}),
    "short_trace": ("`momentum: 0.99`", {"momentum": 0.99}),
    "no_bias_rule": ("`bias_rate: 0` (no intrinsic plasticity)", {"bias_rate": 0.0}),
    "fast_rates": ("`rate: 0.1, bias_rate: 0.1`", {"rate": 0.1, "bias_rate": 0.1}),
}


def variant_config(base, name, lr, seeds, out, overrides=None):
    """The compare config of one variant: scaling alone, one rate, its folder.

    `overrides` (`{section: {key: value}}`) is applied on top (tests use it
    for a small data set).
    """
    sections = {
        "compare": {"methods": ["scaling"], "learning_rates": [lr], "seeds": seeds},
        "output": {"run_dir": os.path.join(out, name)},
        "scaling": VARIANTS[name][1],
    }
    for section, values in (overrides or {}).items():
        sections[section] = {**sections.get(section, {}), **values}
    return config_lib.load_config(base, overrides=sections)


def summary(rows):
    """Mean ± sd of test accuracy, mean dead fraction and entropy per layer."""
    layers = sorted(
        {k[: -len("_dead")] for r in rows for k in r if k.endswith("_dead")}
    )
    accuracy = compare_report.floats(rows, "test_accuracy")
    return {
        "runs": len(rows),
        "accuracy": compare_report.mean_std(accuracy, digits=3),
        "dead": " / ".join(
            f"{np.mean([float(r[f'{k}_dead']) for r in rows]):.0%}" for k in layers
        ),
        "entropy": " / ".join(
            f"{np.mean([float(r[f'{k}_entropy']) for r in rows]):.3f}" for k in layers
        ),
    }


def table(results):
    """Markdown table of `[(variant name, summary)]`."""
    lines = [
        "| scaling settings | runs | test accuracy | dead (layer 1 / 2) "
        "| usage entropy |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, s in results:
        lines.append(
            f"| {VARIANTS[name][0]} | {s['runs']} | {s['accuracy']} | "
            f"{s['dead']} | {s['entropy']} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS)
    )
    parser.add_argument("--out", default="runs/online_lr_settings")
    args = parser.parse_args(argv)
    results, data = [], None
    for name in args.variants:
        config = variant_config(args.config, name, args.lr, args.seeds, args.out)
        print(f"== {name}: scaling {VARIANTS[name][1]}, lr {args.lr}", flush=True)
        if data is None:
            data = train.load_data(config)
        rows = compare.run_comparison(config, data=data)
        results.append((name, summary(rows)))
    print(table(results))


if __name__ == "__main__":
    main()
