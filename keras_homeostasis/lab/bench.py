"""`keras-homeostasis bench`: the per-step cost of homeostasis, measured.

Four variants of the same MLP (`models.build_model("mlp", ...)`, 64 inputs,
10 classes, Adam, Keras' default `steps_per_execution`):

- (a) `none`: no normalization (the reference);
- (b) `batchnorm`: `BatchNormalization` after each hidden Dense;
- (c) `scaling`: plain layers with the `SynapticScalingCallback`;
- (d) `homeostatic_layers`: `HomeostaticDense` layers.

Settings: `one device` (Keras' default `jit_compile`, which is off on a
CPU-only machine and on for one GPU), `one device, XLA` (`jit_compile=True`:
the whole step in one XLA cluster, as TPUs and one GPU run it) and
`mirrored` (MirroredStrategy, where Keras turns XLA off).

For each case (hidden width, depth, batch size) every variant is built and
warmed up, then timed in round-robin trials (the order rotates each trial),
so that a change of machine load hits all variants alike. A trial times
`steps` calls of the model's compiled train function (what `fit` runs for
each step) and syncs once at the end. A ratio to (a) is the median over
trials of the ratio within a trial; times are medians in ms per step.

MirroredStrategy needs its devices configured before TensorFlow starts, so
the mirrored part (two logical CPU devices, or all GPUs with `gpus=True`)
runs in a child process of this module.
"""

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

from keras_homeostasis.lab.bench_cases import CLASSES
from keras_homeostasis.lab.bench_cases import INPUT_DIM
from keras_homeostasis.lab.bench_cases import MIRRORED
from keras_homeostasis.lab.bench_cases import ONE_DEVICE_XLA
from keras_homeostasis.lab.bench_cases import QUICK_CASES
from keras_homeostasis.lab.bench_cases import SETTINGS
from keras_homeostasis.lab.bench_cases import VARIANTS
from keras_homeostasis.lab.bench_cases import full_cases

RESULT_PREFIX = "BENCH-RESULT:"


def build(variant, width, depth, strategy=None, jit_compile="auto"):
    """The compiled MLP of `variant` and its callbacks, under `strategy`."""
    import keras

    from keras_homeostasis.lab import models
    from keras_homeostasis.synaptic_scaling_callback import SynapticScalingCallback

    with strategy.scope() if strategy else contextlib.nullcontext():
        keras.utils.set_random_seed(0)
        model = models.build_model(
            "mlp", variant, (INPUT_DIM,), CLASSES, hidden=[width] * depth
        )
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="sparse_categorical_crossentropy",
            jit_compile=jit_compile,
        )
    callbacks = [SynapticScalingCallback()] if variant == "scaling" else []
    return model, callbacks


class _Runner:
    """Calls one model's compiled train function on an endless dataset."""

    def __init__(self, variant, case, strategy=None, jit_compile="auto"):
        import numpy as np
        import tensorflow as tf

        width, depth, batch = case
        self.model, callbacks = build(variant, width, depth, strategy, jit_compile)
        rng = np.random.default_rng(0)
        x = rng.random((batch * 8, INPUT_DIM)).astype("float32")
        y = rng.integers(0, CLASSES, batch * 8).astype("int32")
        # One `fit` step creates every variable (optimizer included).
        self.model.fit(
            x[:batch], y[:batch], batch_size=batch, verbose=0, callbacks=callbacks
        )
        for callback in callbacks:
            callback.on_train_begin()  # hooks installed, as during `fit`
        self.model.make_train_function()
        dataset = tf.data.Dataset.from_tensor_slices((x, y))
        dataset = dataset.batch(batch, drop_remainder=True).repeat().prefetch(2)
        if strategy is not None:
            dataset = strategy.experimental_distribute_dataset(dataset)
        self.iterator = iter(dataset)
        self.time(3)

    def time(self, steps):
        """Seconds per step over `steps` consecutive steps."""
        function = self.model.train_function
        start = time.perf_counter()
        for _ in range(steps):
            logs = function(self.iterator)
        float(logs["loss"])  # waits for the last step, hence for all
        return (time.perf_counter() - start) / steps


def state_sizes(model):
    """Float32 values of `(trainable weights, homeostatic state, BN statistics)`."""
    import keras
    import numpy as np

    from keras_homeostasis.unit_state import UnitState

    def size(variables):
        return int(sum(np.prod(v.shape) for v in variables if v.dtype == "float32"))

    states = [getattr(layer, "homeostasis", None) for layer in model.layers]
    norms = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    return (
        size(model.trainable_variables),
        sum(size(s.variables) for s in states if isinstance(s, UnitState)),
        sum(size(layer.non_trainable_variables) for layer in norms),
    )


def measure_case(case, trials, steps, strategy=None, jit_compile="auto"):
    """Times the four variants of one case; returns one row per variant."""
    runners = {v: _Runner(v, case, strategy, jit_compile) for v in VARIANTS}
    # The first calls after other models were built are several times slower
    # (seen: 40-100 ms instead of 4 ms): one untimed round first.
    for runner in runners.values():
        runner.time(steps)
    times = {v: [] for v in VARIANTS}
    for trial in range(trials):
        k = trial % len(VARIANTS)
        for variant in VARIANTS[k:] + VARIANTS[:k]:
            times[variant].append(runners[variant].time(steps))
    rows = []
    for variant in VARIANTS:
        pairs = list(zip(times[variant], times["none"]))
        weights, homeostatic, batch_norm = state_sizes(runners[variant].model)
        rows.append(
            {
                "width": case[0],
                "depth": case[1],
                "batch": case[2],
                "variant": variant,
                "ms_per_step": round(1000 * statistics.median(times[variant]), 4),
                "ratio": round(statistics.median(t / b for t, b in pairs), 4),
                "extra_ms": round(1000 * statistics.median(t - b for t, b in pairs), 4),
                "weights": weights,
                "extra_state": homeostatic + batch_norm,
            }
        )
    return rows


def measure(cases, trials, steps, strategy=None, jit_compile="auto", log=print):
    """`measure_case` over `cases`, logging the time each took."""
    rows = []
    for case in cases:
        started = time.perf_counter()
        rows.extend(measure_case(case, trials, steps, strategy, jit_compile))
        seconds = time.perf_counter() - started
        log(f"  width {case[0]}, depth {case[1]}, batch {case[2]}: {seconds:.0f} s")
    return rows


def mirrored_strategy(gpus):
    """MirroredStrategy over all GPUs, or over two logical CPU devices.

    Must run before any other TensorFlow op of the process.
    """
    import tensorflow as tf

    if gpus:
        return tf.distribute.MirroredStrategy()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def _child(spec):
    """Entry point of the mirrored child process: prints its rows as JSON."""
    strategy = mirrored_strategy(spec["gpus"])
    rows = measure(
        [tuple(c) for c in spec["cases"]],
        spec["trials"],
        spec["steps"],
        strategy,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    result = {"replicas": strategy.num_replicas_in_sync, "rows": rows}
    print(RESULT_PREFIX + json.dumps(result))


def measure_mirrored(cases, trials, steps, gpus=False):
    """Runs `measure` under MirroredStrategy in a child process.

    Returns `(replicas, rows)`.
    """
    spec = {"cases": cases, "trials": trials, "steps": steps, "gpus": gpus}
    command = [sys.executable, "-m", "keras_homeostasis.lab.bench", json.dumps(spec)]
    env = {**os.environ}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the mirrored benchmark failed (exit {done.returncode})")
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
            return result["replicas"], result["rows"]
    raise RuntimeError("the mirrored benchmark printed no result")


def environment_line():
    """Versions, devices, load and date, for the report."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    devices = f"{len(gpus)} GPU(s)" if gpus else f"{os.cpu_count()} CPU cores"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}; {devices}; "
        f"1-minute load average at start {load:.2f}; {time.strftime('%Y-%m-%d %H:%M')}"
    )


def run_bench(cases, trials, steps, settings=SETTINGS, gpus=False, log=print):
    """Measures every setting in `settings`; returns `(rows, environment)`."""
    environment = environment_line()
    rows = []
    for setting in (s for s in SETTINGS if s in settings):
        log(f"{setting}:")
        if setting == MIRRORED:
            replicas, found = measure_mirrored(cases[setting], trials, steps, gpus)
            environment += f"; MirroredStrategy over {replicas} replicas"
        else:
            jit = True if setting == ONE_DEVICE_XLA else "auto"
            found = measure(cases[setting], trials, steps, jit_compile=jit, log=log)
        rows.extend({"setting": setting, **row} for row in found)
    return rows, environment + "."


def bench(
    quick,
    out_dir,
    trials=None,
    steps=None,
    settings=None,
    gpus=False,
    command="keras-homeostasis bench",
    log=print,
):
    """Runs the benchmark, writes `bench.csv` and `bench.md`; returns the rows."""
    from keras_homeostasis.lab import bench_report

    cases = QUICK_CASES if quick else dict.fromkeys(SETTINGS, full_cases())
    trials = trials or (9 if quick else 15)
    steps = steps or 20
    rows, environment = run_bench(cases, trials, steps, settings or SETTINGS, gpus, log)
    environment += f" {trials} trials of {steps} steps per variant."
    os.makedirs(out_dir, exist_ok=True)
    bench_report.write_csv(rows, os.path.join(out_dir, "bench.csv"))
    markdown = bench_report.to_markdown(rows, command, environment)
    with open(os.path.join(out_dir, "bench.md"), "w", encoding="utf-8") as f:
        f.write(markdown)
    log(markdown)
    return rows


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
