"""Units that die at large steps, and what the rule sees of them.

Trains the `compare` CNN (or MLP) on the first 12,000 MNIST images with SGD
and momentum 0.9 and the callback (`scaling`, `centered_scaling` or
`centered_offsets_scaling`), in chunks of optimizer steps. After each chunk
it reports, for every scaled layer: the share of units silent on a fixed
batch of training images (no value above zero), the share dead on test
images (as `UsageReport` counts them), and for the silent units the offset
the rule reads in its traces (mean pre-activation over spread, the centered
bias where inputs are centered) beside the offset of their pre-activation
on that batch, its largest value and their traced firing rate. A unit
whose drive is skewed (a filter of negative weights on non-negative
pixels peaks at the background) can be silent on every input while both
offsets say it fires often. Reproduces the "silent units" rows of
docs/design.md.

    python benchmarks/silent_units.py --method centered_scaling --lr 0.1 > runs.jsonl
    python benchmarks/silent_units.py --table runs.jsonl   # as markdown
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import keras_homeostasis as kh  # noqa: E402
from keras_homeostasis.lab import models  # noqa: E402
from keras_homeostasis.lab.data import SHARED_MNIST  # noqa: E402
from keras_homeostasis.lab.data import load_dataset  # noqa: E402

CHECKPOINTS = (8, 16, 24, 32, 48, 64, 94, 188, 282, 376, 470)


def preactivation(model, layer, images):
    """`layer`'s pre-activation `z` on `images` (Dense or Conv)."""
    inputs = keras.Model(model.inputs[0], layer.input)(images)
    if hasattr(layer, "convolution_op"):
        z = layer.convolution_op(inputs, layer.kernel)
    else:
        z = ops.matmul(inputs, layer.kernel)
    if layer.bias is not None:
        z = z + layer.bias
    return np.asarray(z).reshape(-1, int(layer.kernel.shape[-1]))


def rule_offsets(callback, layer, state):
    """The offsets in spreads the rule reads in its traces, and the traced
    firing rates."""
    seen = {k: np.asarray(v) for k, v in state.estimates(callback.settings).items()}
    bias = np.asarray(layer.bias) if layer.bias is not None else 0.0
    if state.centering is not None:
        bias = np.asarray(state.centering.centered_bias(layer.bias))
    return (seen["drive_mean"] + bias) / seen["spread"], seen["firing_rate"]


def layer_row(callback, model, layer, state, probe, dead):
    """One layer's silent units: their share, and what the rule and the
    probe batch say of them."""
    z = preactivation(model, layer, probe)
    silent = z.max(axis=0) <= 0.0
    traced, firing = rule_offsets(callback, layer, state)
    actual = z.mean(axis=0) / np.maximum(z.std(axis=0), 1e-12)
    row = {"silent": round(float(silent.mean()), 3), "dead": round(dead, 3)}
    if silent.any():
        row.update(
            traced_offset=round(float(traced[silent].mean()), 2),
            batch_offset=round(float(actual[silent].mean()), 2),
            batch_max=round(float(z.max(axis=0)[silent].max()), 3),
            traced_firing=round(float(firing[silent].mean()), 3),
        )
    live = None if silent.all() else round(float(traced[~silent].mean()), 2)
    return {**row, "live_traced_offset": live}


def run(data, method, lr, architecture="cnn", checkpoints=CHECKPOINTS, seed=0):
    """Trains in chunks up to each checkpoint step; yields one row per
    checkpoint with every scaled layer's `layer_row`."""
    (x, y), (x_test, _) = data
    keras.utils.set_random_seed(seed)
    model = models.build_model(architecture, "none", x.shape[1:], 10)
    optimizer = models.build_optimizer("sgd", lr, momentum=0.9)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    callback = kh.SynapticScalingCallback(**models.CALLBACK_METHODS[method])
    probe, done = x[-512:], 0
    for step in checkpoints:
        order = np.arange(done * 128, step * 128) % len(x)
        history = model.fit(
            x[order], y[order], batch_size=128, shuffle=False, verbose=0,
            callbacks=[callback],
        )  # fmt: skip
        done = step
        report = kh.metrics.UsageReport.from_model(model, x_test)
        layers = {
            layer.name: layer_row(
                callback,
                model,
                layer,
                state,
                probe,
                report.layers[layer.name]["dead_fraction"],
            )
            for layer, state in callback.bindings
        }
        loss = round(float(history.history["loss"][-1]), 3)
        yield {"method": method, "lr": lr, "step": step, "loss": loss, "layers": layers}


def table(path):
    """The rows of a JSON-lines file as a markdown table, a line per layer."""
    lines = [
        "| method | lr | step | loss | layer | silent | dead | silent units: "
        "traced offset / batch offset / batch max / traced firing | live: "
        "traced offset |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for line in open(path):
        row = json.loads(line)
        for name, m in row["layers"].items():
            silent = "-"
            if "traced_offset" in m:
                silent = (
                    f"{m['traced_offset']} / {m['batch_offset']} / "
                    f"{m['batch_max']} / {m['traced_firing']}"
                )
            lines.append(
                f"| {row['method']} | {row['lr']} | {row['step']} | {row['loss']} "
                f"| {name} | {m['silent']} | {m['dead']} | {silent} "
                f"| {_or_dash(m['live_traced_offset'])} |"
            )
    return "\n".join(lines)


def _or_dash(value):
    return "-" if value is None else value


def load(path, limit=12000):
    """MNIST as the lab loads it (`load_dataset`): the first `limit`
    training images, and the first 2,000 test images."""
    train, (x_test, y_test) = load_dataset(path, limit=limit)
    return train, (x_test[:2000], y_test[:2000])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", metavar="JSONL", help="print a file's table")
    parser.add_argument("--data", default=SHARED_MNIST)
    parser.add_argument("--method", default="centered_scaling",
                        choices=sorted(models.CALLBACK_METHODS))  # fmt: skip
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--architecture", default="cnn", choices=models.ARCHITECTURES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    data = load(args.data)
    for row in run(data, args.method, args.lr, args.architecture, seed=args.seed):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
