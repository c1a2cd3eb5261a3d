"""Centered inputs: homeostatic layers that subtract a trace of their input mean.

A unit's drive `w_i . (x - x_bar)` has a mean near zero whatever its weights,
so the optimizer no longer moves each unit's offset through its kernel, only
through its bias, which the rule's intrinsic plasticity also sets (the
offset made invisible to the kernel, as the scale-invariant layers make the
scale invisible to the loss). The gradient of each kernel becomes
`(x - x_bar) delta`: the centered inputs of LeCun et al. (1998).

Trains the `compare` MLP or CNN with no normalization, BatchNormalization,
the homeostatic layers and the homeostatic layers with
`center_inputs=True`, and prints one JSON line per run (test accuracy,
usage entropy and dead fraction per hidden layer).

    python benchmarks/centered_inputs.py --architecture cnn --limit 12000 \\
        --epochs 5 > runs.jsonl
    python benchmarks/centered_inputs.py --table runs.jsonl
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_homeostasis as kh  # noqa: E402
from keras_homeostasis.lab import models  # noqa: E402
from keras_homeostasis.lab.data import SHARED_MNIST  # noqa: E402

METHODS = (
    "none",
    "batchnorm",
    "homeostatic_layers",
    "scale_invariant_layers",
    "centered",
    "centered_scale_invariant_layers",
)


def build(architecture, method, input_shape):
    normalization = "centered_layers" if method == "centered" else method
    return models.build_model(architecture, normalization, input_shape, 10)


def run(data, architecture, method, optimizer, seed, epochs, batch_size, lr=None):
    (x, y), (xt, yt) = data
    keras.utils.set_random_seed(seed)
    model = build(architecture, method, x.shape[1:])
    model.compile(
        models.build_optimizer(optimizer, lr),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.time()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    accuracy = model.evaluate(xt, yt, verbose=0)[1]
    # Post-ReLU outputs of every method (after the norm layer for BatchNorm).
    hidden = models.hidden_layer_names(model)
    report = kh.metrics.UsageReport.from_model(model, xt, layers=hidden)
    return {
        "architecture": architecture,
        "method": method,
        "optimizer": optimizer,
        "learning_rate": lr,
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "train_images": len(x),
        "test_accuracy": round(float(accuracy), 4),
        "usage_entropy": {
            n: round(float(m["usage_entropy"]), 4) for n, m in report.layers.items()
        },
        "dead_fraction": {
            n: round(float(m["dead_fraction"]), 4) for n, m in report.layers.items()
        },
        "seconds": round(time.time() - start, 1),
    }


def table(path):
    """Markdown: one row per setting and method, mean over seeds."""
    groups = {}
    with open(path, encoding="utf-8") as f:
        for row in map(json.loads, filter(str.strip, f)):
            key = (
                row["architecture"],
                row["optimizer"],
                row["learning_rate"],
                row["batch_size"],
                row["method"],
            )
            groups.setdefault(key, []).append(row)
    lines = [
        "| model | optimizer (lr) | batch | method | seeds | test accuracy "
        "| usage entropy per hidden layer | most dead |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (arch, opt, lr, batch, method), rows in groups.items():
        acc = np.array([r["test_accuracy"] for r in rows]) * 100
        names = list(rows[0]["usage_entropy"])
        usage = [np.mean([r["usage_entropy"][n] for r in rows]) for n in names]
        dead = max(max(r["dead_fraction"].values()) for r in rows)
        spread = f" ± {acc.std(ddof=1):.2f}" if len(acc) > 1 else ""
        lines.append(
            f"| {arch} | {opt} ({lr or 'default'}) | {batch} | {method} | "
            f"{len(rows)} | {acc.mean():.2f}%{spread} | "
            + " / ".join(f"{u:.3f}" for u in usage)
            + f" | {100 * dead:.1f}% |"
        )
    return "\n".join(lines)


def load(path, limit, architecture):
    raw = np.load(path)
    x, xt = raw["x_train"][:limit] / 255.0, raw["x_test"] / 255.0
    if architecture == "cnn":
        x, xt = x[..., None], xt[..., None]
    return (x, raw["y_train"][:limit]), (xt, raw["y_test"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", help="print the markdown table of a JSONL file")
    parser.add_argument("--data", default=SHARED_MNIST)
    parser.add_argument("--architecture", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    parser.add_argument("--optimizers", nargs="+", default=["sgd", "adam", "adamw"])
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--limit", type=int, default=60000)
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    data = load(args.data, args.limit, args.architecture)
    for optimizer in args.optimizers:
        for seed in args.seeds:
            for method in args.methods:
                row = run(
                    data,
                    args.architecture,
                    method,
                    optimizer,
                    seed,
                    args.epochs,
                    args.batch_size,
                    args.learning_rate,
                )
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
