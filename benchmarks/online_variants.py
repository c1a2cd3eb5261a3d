"""Online permuted MNIST with the scaling rule's variants, one line per task.

Reproduces the online table of docs/design.md: MLP 784-100-100-100-10 ReLU,
plain SGD (step 0.03), batch size 1, a new pixel permutation every task,
5,000 examples per task seen once. Online accuracy is Keras' train-mode
accuracy of the one-epoch fit over the task (each example is scored before
its update); dead units are counted at the end of each task on 2,000 images
of that task (never positive on any of them).

    python benchmarks/online_variants.py --tasks 12 [--data PATH/mnist.npz]
    python benchmarks/online_variants.py --table runs.jsonl   # as markdown
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
    ("backprop", None),
    ("scaling", {}),
    ("scaling", {"anchor": 1.0, "target_rate": 0.5}),  # rule v2
    ("scaling", {"anchor": 0.0}),
    ("scaling", {"anchor": 0.1}),
    ("scaling", {"target_rate": 0.5}),
    ("scaling", {"momentum": 0.99}),
    ("scaling", {"rate": 0.01, "bias_rate": 0.01}),  # the earlier default rates
]


def build(width):
    layers = [keras.Input((784,))]
    layers += [keras.layers.Dense(width, activation="relu") for _ in range(3)]
    layers.append(keras.layers.Dense(10, activation="softmax"))
    return keras.Sequential(layers)


def dead_fractions(model, x):
    hidden = [layer for layer in model.layers[:-1]]
    probe = keras.Model(model.inputs, [layer.output for layer in hidden])
    outputs = probe.predict(x, verbose=0, batch_size=500)
    return [round(float(np.mean(np.all(o <= 0, axis=0))), 3) for o in outputs]


def run(images, labels, settings, args):
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = build(args.width)
    model.compile(
        keras.optimizers.SGD(args.lr),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=250,
        jit_compile=True,
    )
    callbacks = [] if settings is None else [kh.SynapticScalingCallback(**settings)]
    start = time.time()
    for task in range(args.tasks):
        permutation = rng.permutation(784)
        chosen = rng.choice(len(images), args.per_task, replace=False)
        x, y = images[chosen][:, permutation], labels[chosen]
        history = model.fit(
            x, y, batch_size=1, epochs=1, verbose=0, callbacks=callbacks, shuffle=False
        )
        yield {
            "task": task,
            "online_accuracy": round(history.history["accuracy"][0], 4),
            "dead": dead_fractions(model, x[:2000]),
            "seconds": round(time.time() - start, 1),
        }


def table(path):
    """The markdown table of docs/design.md from this script's JSON lines."""
    runs = {}
    with open(path, encoding="utf-8") as f:
        for row in map(json.loads, filter(str.strip, f)):
            runs.setdefault((row["method"], json.dumps(row["settings"])), []).append(
                row
            )
    lines = [
        "| method | settings | online accuracy, tasks 1-N | dead units after the "
        "last task (layers 1 / 2 / 3) |",
        "| --- | --- | --- | --- |",
    ]
    for (method, settings), rows in runs.items():
        accuracy = " ".join(f"{r['online_accuracy']:.3f}" for r in rows)
        dead = " / ".join(f"{100 * d:.0f}%" for d in rows[-1]["dead"])
        lines.append(f"| {method} | `{settings}` | {accuracy} | {dead} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", help="print the markdown table of a JSONL file")
    parser.add_argument("--data", default=SHARED_MNIST)
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--per-task", dest="per_task", type=int, default=5000)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    raw = np.load(args.data)
    images = raw["x_train"].reshape(-1, 784).astype("float32") / 255.0
    for method, settings in VARIANTS:
        for row in run(images, raw["y_train"], settings, args):
            print(
                json.dumps({"method": method, "settings": settings, **row}), flush=True
            )


if __name__ == "__main__":
    main()
