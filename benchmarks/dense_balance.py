"""Why the small CNN's Dense layer stays less evenly used than its convolutions.

Trains the `compare` CNN (Conv32-Pool-Conv64-Pool-Dense128) on the first
12,000 MNIST images, batch 128, one seed, with the callback's defaults and
with stronger controllers (a ten-step trace, faster rates), and reports for
every scaled layer the test-set usage entropy (as in `UsageReport`) beside
what the rule itself sees in its traces: how much the units' drive spreads,
their offsets in spreads (mean pre-activation / spread) and their firing
rates still differ, and the same figures for the Dense layer measured on
test images under the final weights. Reproduces the Dense-layer table of
docs/design.md.

    python benchmarks/dense_balance.py --epochs 5 > runs.jsonl [--data PATH/mnist.npz]
    python benchmarks/dense_balance.py --table runs.jsonl   # as markdown
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

VARIANTS = [
    {},
    {"momentum": 0.9},  # a ten-step trace
    {"momentum": 0.9, "bias_rate": 0.1},
    {"momentum": 0.9, "rate": 0.1, "bias_rate": 0.3},
]


def trace_spreads(callback):
    """Per scaled layer: how far apart its units are, in the rule's traces."""
    found = {}
    for layer, state in callback.bindings:
        seen = {k: np.asarray(v) for k, v in state.estimates(callback.settings).items()}
        bias = np.asarray(layer.bias) if layer.bias is not None else 0.0
        offset = (seen["drive_mean"] + bias) / seen["spread"]
        found[layer.name] = {
            "spread_cv": round(float(seen["spread"].std() / seen["spread"].mean()), 3),
            "offset_std": round(float(offset.std()), 3),
            "firing_mean": round(float(seen["firing_rate"].mean()), 3),
            "firing_std": round(float(seen["firing_rate"].std()), 3),
        }
    return found


def measured_spreads(model, layer_name, x):
    """The same figures for a Dense layer, measured now on the images `x`:
    what its units' drives are under the current weights (the traces
    average over the last `1 / (1 - momentum)` steps of changing weights)."""
    layer = model.get_layer(layer_name)
    features = keras.Model(model.inputs[0], layer.input).predict(x, verbose=0)
    drive = features @ np.asarray(layer.kernel)
    spread = drive.std(axis=0)
    offset = (drive.mean(axis=0) + np.asarray(layer.bias)) / spread
    firing = (drive + np.asarray(layer.bias) > 0).mean(axis=0)
    return {
        "spread_cv": round(float(spread.std() / spread.mean()), 3),
        "offset_std": round(float(offset.std()), 3),
        "firing_mean": round(float(firing.mean()), 3),
        "firing_std": round(float(firing.std()), 3),
    }


def run(data, settings, epochs, seed, optimizer="adam"):
    (x, y), (xt, yt) = data
    keras.utils.set_random_seed(seed)
    model = models.build_model("cnn", "none", x.shape[1:], 10)
    model.compile(
        models.build_optimizer(optimizer),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callback = kh.SynapticScalingCallback(**settings)
    start = time.time()
    model.fit(x, y, batch_size=128, epochs=epochs, verbose=0, callbacks=[callback])
    accuracy = model.evaluate(xt, yt, verbose=0)[1]
    report = kh.metrics.UsageReport.from_model(model, xt)
    return {
        "optimizer": optimizer,
        "settings": settings,
        "epochs": epochs,
        "test_accuracy": round(float(accuracy), 4),
        "usage_entropy": {
            name: round(m["usage_entropy"], 4) for name, m in report.layers.items()
        },
        "traces": trace_spreads(callback),
        "measured": measured_spreads(model, "hidden_3", xt[:5000]),
        "seconds": round(time.time() - start, 1),
    }


def table(path):
    """The markdown table of docs/design.md from this script's JSON lines."""
    lines = [
        "| settings changed from the defaults | test acc | usage entropy "
        "(conv 1 / conv 2 / Dense) | Dense, in the traces: spread CV, offset "
        "std, firing rate mean +- std | Dense, measured on 5,000 test images |",
        "| --- | --- | --- | --- | --- |",
    ]
    with open(path, encoding="utf-8") as f:
        for row in map(json.loads, filter(str.strip, f)):
            label = json.dumps(row["settings"]) if row["settings"] else "defaults"
            entropy = " / ".join(f"{v:.3f}" for v in row["usage_entropy"].values())
            traced = list(row["traces"].values())[-1]
            lines.append(
                f"| `{label}` | {100 * row['test_accuracy']:.2f}% | {entropy} | "
                f"{_figures(traced)} | {_figures(row['measured'])} |"
            )
    return "\n".join(lines)


def _figures(dense):
    return (
        f"{dense['spread_cv']:.3f}, {dense['offset_std']:.2f}, "
        f"{dense['firing_mean']:.2f} +- {dense['firing_std']:.2f}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", help="print the markdown table of a JSONL file")
    parser.add_argument("--data", default=SHARED_MNIST)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--limit", type=int, default=12000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    raw = np.load(args.data)
    data = (
        (raw["x_train"][: args.limit, ..., None] / 255.0, raw["y_train"][: args.limit]),
        (raw["x_test"][..., None] / 255.0, raw["y_test"]),
    )
    for settings in VARIANTS:
        print(json.dumps(run(data, settings, args.epochs, args.seed)), flush=True)


if __name__ == "__main__":
    main()
