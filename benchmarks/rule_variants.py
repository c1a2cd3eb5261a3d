"""Sweep of the scaling rule's settings on MNIST, MLP 784-256-256-10.

Reproduces the settings table of docs/design.md: for each optimizer, no
normalization, BatchNormalization and the scaling callback with its defaults
and with one setting changed at a time (rule v2's set points pulled at full
rate, pure load balancing, a faster anchor, an anchored firing rate, a faster
trace, no intrinsic plasticity, the earlier, slower default rates, a
bounded cumulative factor),
one seed, a few epochs.

    python benchmarks/rule_variants.py --epochs 3 [--data ../shared/datasets/mnist.npz]
    python benchmarks/rule_variants.py --table runs.jsonl   # its lines as markdown
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_homeostasis as kh  # noqa: E402
from keras_homeostasis.lab.data import SHARED_MNIST  # noqa: E402

VARIANTS = [
    {},
    {"anchor": 1.0, "target_rate": 0.5},  # rule v2: units pulled to the set points
    {"anchor": 0.0},  # pure load balancing: the layer's scale left alone
    {"anchor": 0.1},
    {"target_rate": 0.5},  # the layer's firing rate anchored too
    {"momentum": 0.99},
    {"bias_rate": 0.0},
    {"rate": 0.01, "bias_rate": 0.01},  # the earlier default rates
    {"min_gain": 0.5, "max_gain": 2.0},
]
OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
    "adam": lambda: keras.optimizers.Adam(1e-3),
    "adamw": lambda: keras.optimizers.AdamW(1e-3),
}


def build(batchnorm):
    layers = [keras.Input((784,))]
    for _ in range(2):
        if batchnorm:
            layers += [
                keras.layers.Dense(256),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
            ]
        else:
            layers.append(keras.layers.Dense(256, activation="relu"))
    layers.append(keras.layers.Dense(10, activation="softmax"))
    return keras.Sequential(layers)


def run(data, optimizer, method, settings, epochs, seed):
    (x, y), (xt, yt) = data
    keras.utils.set_random_seed(seed)
    model = build(method == "batchnorm")
    model.compile(
        OPTIMIZERS[optimizer](), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    callbacks = [kh.SynapticScalingCallback(**settings)] if method == "scaling" else []
    start = time.time()
    model.fit(x, y, batch_size=128, epochs=epochs, verbose=0, callbacks=callbacks)
    accuracy = model.evaluate(xt, yt, verbose=0)[1]
    probes = None
    if method == "batchnorm":
        probes = [x.name for x in model.layers if isinstance(x, keras.layers.ReLU)]
    report = kh.metrics.UsageReport.from_model(model, xt, layers=probes)
    entropy = [round(m["usage_entropy"], 4) for m in report.layers.values()]
    dead = [round(m["dead_fraction"], 3) for m in report.layers.values()]
    cv = [round(m["cv"], 3) for m in report.layers.values()]
    return {
        "optimizer": optimizer,
        "method": method,
        "settings": settings,
        "test_accuracy": round(float(accuracy), 4),
        "usage_entropy": entropy,
        "cv": cv,
        "dead": dead,
        "seconds": round(time.time() - start, 1),
    }


def table(path):
    """The markdown table of docs/design.md from this script's JSON lines."""
    lines = [
        "| optimizer | method | settings changed from the defaults | test acc "
        "| usage entropy (1 / 2) | dead (1 / 2) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    with open(path, encoding="utf-8") as f:
        for row in map(json.loads, filter(str.strip, f)):
            label = "-"
            if row["method"] == "scaling":
                label = json.dumps(row["settings"]) if row["settings"] else "defaults"
            entropy = " / ".join(f"{v:.3f}" for v in row["usage_entropy"])
            dead = " / ".join(f"{v:.3f}" for v in row["dead"])
            lines.append(
                f"| {row['optimizer']} | {row['method']} | `{label}` | "
                f"{100 * row['test_accuracy']:.2f}% | {entropy} | {dead} |"
            )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", help="print the markdown table of a JSONL file")
    parser.add_argument("--data", default=SHARED_MNIST)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS))
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    raw = np.load(args.data)
    data = (
        (raw["x_train"].reshape(-1, 784) / 255.0, raw["y_train"]),
        (raw["x_test"].reshape(-1, 784) / 255.0, raw["y_test"]),
    )
    for optimizer in args.optimizers:
        jobs = [("none", {}), ("batchnorm", {})]
        jobs += [("scaling", v) for v in VARIANTS]
        for method, settings in jobs:
            row = run(data, optimizer, method, settings, args.epochs, args.seed)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
