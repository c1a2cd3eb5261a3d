"""Replica equality and the one-device XLA path, on whatever devices exist.

    python benchmarks/gpu_replica_check.py mirrored [--cpus N]
    python benchmarks/gpu_replica_check.py xla

`mirrored`: MirroredStrategy over all visible GPUs (or N logical CPUs with
`--cpus N`, to try the script without a GPU). Each replica gets a different
slice of every batch; after `fit` with the scaling callback, and with the
homeostatic layers, every replica's copy of every variable (weights,
homeostatic state, optimizer) must be bit-identical. Exit status 1 otherwise.

`xla`: one device, `jit_compile=True` (what Keras' "auto" picks on one GPU):
the whole train step, homeostasis included, in one XLA cluster. Checks that
the scaling acted and stayed finite, and prints the step time.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras  # noqa: E402  (after the log level; no TensorFlow op runs here)


def parse():
    parser = argparse.ArgumentParser()
    parser.add_argument("check", choices=["mirrored", "xla"])
    parser.add_argument("--cpus", type=int, default=0)
    return parser.parse_args()


def data(n=2048):
    """Random images and labels of MNIST shape, as the bench uses."""
    from keras_homeostasis.lab import bench_timing

    return bench_timing.random_data(128, n // 128)


def model_of(variant, strategy=None, jit_compile="auto"):
    """The bench's MLP 784-256x3-10 of `variant`, compiled, and its callbacks."""
    from keras_homeostasis.lab import bench_timing
    from keras_homeostasis.lab.bench_cases import HEADLINE

    return bench_timing.build(variant, HEADLINE, strategy, jit_compile)


def replica_differences(model, strategy):
    """Names of variables whose replica copies differ, and how many were checked."""
    import numpy as np

    from keras_homeostasis.unit_state import UnitState

    variables = {id(v): v for v in model.variables}
    variables.update((id(v), v) for v in model.optimizer.variables)
    for layer in model.layers:
        state = getattr(layer, "homeostasis", None)
        if isinstance(state, UnitState):
            variables.update((id(v), v) for v in state.variables)
    variables = list(variables.values())
    differ = []
    for v in variables:
        copies = [np.asarray(c) for c in strategy.experimental_local_results(v.value)]
        if any(not np.array_equal(copies[0], c) for c in copies[1:]):
            differ.append(v.path)
    return differ, len(variables)


def check_mirrored(cpus):
    import tensorflow as tf

    if cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * cpus
        )
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(cpus)])
    else:
        strategy = tf.distribute.MirroredStrategy()
    replicas = strategy.num_replicas_in_sync
    print(
        f"MirroredStrategy over {replicas} replicas: {strategy.extended.worker_devices}"
    )
    if replicas < 2:
        print("Only one replica: nothing to compare (need two or more devices).")
        return 0
    failed = 0
    x, y = data()
    for variant in ("scaling", "homeostatic_layers"):
        model, callbacks = model_of(variant, strategy)
        model.fit(
            x, y, batch_size=64 * replicas, epochs=2, verbose=0, callbacks=callbacks
        )
        differ, checked = replica_differences(model, strategy)
        status = "identical" if not differ else f"DIFFER: {differ[:5]}"
        print(f"  {variant}: {checked} variables, replica copies {status}")
        failed += bool(differ)
    return 1 if failed else 0


class EpochClock(keras.callbacks.Callback):
    """Records each epoch's wall time."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def check_xla():
    import numpy as np
    import tensorflow as tf

    from keras_homeostasis.unit_state import UnitState

    print(f"Devices: {[d.name for d in tf.config.list_logical_devices()]}")
    x, y = data()
    failed = 0
    for variant in ("none", "scaling", "homeostatic_layers"):
        model, callbacks = model_of(variant, jit_compile=True)
        clock = EpochClock()
        model.fit(
            x, y, batch_size=128, epochs=3, verbose=0, callbacks=callbacks + [clock]
        )
        # The first epoch includes tracing and XLA compilation.
        ms = 1000 * min(clock.seconds[1:]) / (len(x) // 128)
        states = [getattr(layer, "homeostasis", None) for layer in model.layers]
        states = [s for s in states if isinstance(s, UnitState)]
        factors = [s.factor.numpy() for s in states]
        finite = all(np.all(np.isfinite(f)) for f in factors)
        ok = model.jit_compile is True and finite and (variant == "none" or states)
        failed += not ok
        print(
            f"  {variant}: jit_compile={model.jit_compile}, {ms:.2f} ms/step, "
            f"{len(states)} scaled layers, factors finite: {finite}"
        )
    return 1 if failed else 0


def main():
    args = parse()
    if args.check == "mirrored":
        return check_mirrored(args.cpus)
    return check_xla()


if __name__ == "__main__":
    sys.exit(main())
