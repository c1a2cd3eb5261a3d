"""What a compiled online step pays once XLA's CPU runtime hands kernels over.

XLA's CPU runtime runs a compiled step's kernels on the thread that
launched it while at most 8 of them are ready at once. Past that it hands
half of the ready kernels to its worker threads and the launching thread
waits for them: for a step of small kernels (batch size 1) the hand-over
costs more than the kernels. This times the online MLP of the bench
(784-100x3-10, plain SGD, batch 1, `jit_compile=True`,
`steps_per_execution=250`) with no normalization, plus a layer that adds
one to each of `K` scalar variables on every training step: each add is a
kernel that needs nothing else, so each starts ready. The plain MLP's
step starts with 4 ready kernels (with the writes, 4 + K): once the first
is taken, 3 + K wait, and from `K = 6` on more than 8 wait and the
hand-over begins. Process CPU and wall time per step, and their ratios to
`K = 0`, medians over rounds that rotate the models in one process:

    python benchmarks/xla_cpu_handover.py [--writes 0 2 4 6 8 12] [--rounds 5]

`python benchmarks/profile_step.py VARIANT --batch 1 --jit` counts the
kernels a homeostatic step hands over and how long its thread waits.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402


class CountingLayer(keras.layers.Layer):
    """Passes its inputs through; in training adds one to each of its
    `count` scalar variables (state nothing else in the step reads)."""

    def __init__(self, count, **kwargs):
        super().__init__(**kwargs)
        self.count = count

    def build(self, input_shape):
        self.counters = [
            self.add_weight(shape=(), initializer="zeros", trainable=False)
            for _ in range(self.count)
        ]

    def call(self, inputs, training=None):
        if training:
            for counter in self.counters:
                counter.assign_add(1.0)
        return inputs


def build(writes, width=100):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((784,))]
    layers += [keras.layers.Dense(width, activation="relu") for _ in range(3)]
    if writes:
        layers.append(CountingLayer(writes))
    layers.append(keras.layers.Dense(10))
    model = keras.Sequential(layers)
    model.compile(
        keras.optimizers.SGD(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
        steps_per_execution=250,
    )
    return model


def time_fit(model, x, y):
    """`(process CPU, wall)` microseconds per step of one online epoch."""
    cpu, wall = time.process_time(), time.perf_counter()
    model.fit(x, y, batch_size=1, verbose=0)
    steps = len(x)
    return (
        1e6 * (time.process_time() - cpu) / steps,
        1e6 * (time.perf_counter() - wall) / steps,
    )


def measure(writes, steps, rounds, progress=print):
    """`{K: [(cpu, wall) per round]}`, after one untimed fit per model."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps, 784)).astype("float32")
    y = rng.integers(0, 10, steps)
    models = {k: build(k) for k in writes}
    for model in models.values():
        model.fit(x, y, batch_size=1, verbose=0)  # traced and compiled
    times = {k: [] for k in writes}
    for round_ in range(rounds):
        # Rotated, so no model always runs first after another.
        order = writes[round_ % len(writes) :] + writes[: round_ % len(writes)]
        for k in order:
            times[k].append(time_fit(models[k], x, y))
        progress(f"round {round_ + 1}/{rounds} done")
    return times


def table(times):
    """Markdown rows: medians per step and their ratios to the first K."""
    first = next(iter(times))
    base_cpu = statistics.median(c for c, _ in times[first])
    base_wall = statistics.median(w for _, w in times[first])
    lines = [
        "| K writes | CPU us/step | CPU ratio | wall us/step | wall ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for k, rows in times.items():
        cpu = statistics.median(c for c, _ in rows)
        wall = statistics.median(w for _, w in rows)
        lines.append(
            f"| {k} | {cpu:.0f} | {cpu / base_cpu:.2f} | {wall:.0f} "
            f"| {wall / base_wall:.2f} |"
        )
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, nargs="+", default=[0, 2, 4, 6, 8, 12])
    parser.add_argument("--steps", type=int, default=2000, help="steps per fit")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if any(k < 0 for k in args.writes):
        parser.error(f"--writes must be 0 or more. Received: {args.writes}")
    times = measure(args.writes, args.steps, args.rounds)
    print("\n".join(table(times)))


if __name__ == "__main__":
    main()
