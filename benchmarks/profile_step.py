"""Where a training step's time goes: a TensorFlow profile of whole `fit` epochs.

Profiles one `fit` of an MLP (784 inputs, 3 hidden ReLU layers or `--depth`,
SGD) with no normalization, the scaling callback, or the homeostatic layers (`layers`),
with `scale_invariant=True` (`invariant`), `center_inputs=True`
(`centered`) or both (`centered_invariant`), or the callback with
`center_inputs=True` (`centered_scaling`, `centered_offsets_scaling`: the
lab's methods), and prints the
operations by total time per step, grouped by kind (`MatMul`, `Mul`, `All`,
an XLA executable...), with how many of each run per step. Run it beside the
plain model to see what homeostasis adds:

    python benchmarks/profile_step.py none --batch 1
    python benchmarks/profile_step.py scaling --batch 1
    python benchmarks/profile_step.py scaling --batch 128 --width 256 --jit
    python benchmarks/profile_step.py scaling --batch 1 --jit --period 10

Without `--jit` every operation is one TensorFlow kernel, so the table shows
each one; with it the step is one XLA executable, and the table shows the
kernels XLA made of it (its fusions, copies and dots, by name, as they run
on TensorFlow's and Eigen's threads). The raw profile stays in `--out` for
TensorBoard's profiler.
"""

import argparse
import collections
import glob
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# The homeostatic-layer variants and their layers' options.
LAYER_OPTIONS = {
    "layers": {},
    "invariant": {"scale_invariant": True},
    "centered": {"center_inputs": True},
    "centered_invariant": {"scale_invariant": True, "center_inputs": True},
}


def parse_args():
    # The callback's variants are the lab's and the bench's.
    from keras_homeostasis.lab.models import CALLBACK_METHODS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "variant", choices=sorted(["none", *CALLBACK_METHODS, *LAYER_OPTIONS])
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--depth", type=int, default=3, help="hidden layers")
    parser.add_argument("--steps", type=int, default=1000, help="profiled steps")
    parser.add_argument("--steps-per-execution", type=int, default=250)
    parser.add_argument("--jit", action="store_true", help="jit_compile=True")
    parser.add_argument(
        "--period",
        type=int,
        default=1,
        help="the rule's `period` (the callback and the layers)",
    )
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", default="runs/profile")
    return parser.parse_args()


def build(args):
    import keras

    from keras_homeostasis.lab.models import CALLBACK_METHODS
    from keras_homeostasis.layers import HomeostaticDense
    from keras_homeostasis.synaptic_scaling_callback import SynapticScalingCallback

    keras.utils.set_random_seed(0)
    settings = {"period": args.period}
    if args.variant in LAYER_OPTIONS:
        options = LAYER_OPTIONS[args.variant]
        hidden = [
            HomeostaticDense(args.width, activation="relu", **options, **settings)
            for _ in range(args.depth)
        ]
    else:
        hidden = [
            keras.layers.Dense(args.width, activation="relu") for _ in range(args.depth)
        ]
    model = keras.Sequential([keras.Input((784,)), *hidden, keras.layers.Dense(10)])
    model.compile(
        keras.optimizers.SGD(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=args.jit,
        steps_per_execution=min(args.steps_per_execution, args.steps),
    )
    callbacks = []
    if args.variant in CALLBACK_METHODS:
        options = CALLBACK_METHODS[args.variant]
        callbacks = [SynapticScalingCallback(**options, **settings)]
    return model, callbacks


def op_kind(name):
    # TensorFlow kernels are named "scope/name:Type"; keep the type.
    return name.rsplit(":", 1)[-1] if ":" in name else name


# Events on the compute threads that wrap kernels rather than being one, or
# mark the end of one that ran asynchronously (`end: multiply_fusion.2`).
WRAPPERS = (
    "ExecutorState",
    "ThreadpoolListener",
    "ThunkExecutor",
    "BlockUntilReady",
    "end: ",
)


def counted(name, xla):
    """Whether a compute-thread event is one kernel (TensorFlow or XLA)."""
    if name.startswith(WRAPPERS):
        return False
    if xla:  # XLA's kernels are named after their fusion: `multiply_fusion.2`
        return "CpuExecutable" not in name and not name.startswith("while/")
    # TensorFlow's are "scope/name:Type" (scopes start with `while/` inside
    # a `steps_per_execution` loop).
    return ":" in name or "CpuExecutable" in name


def read_profile(path):
    """The profile's events as `(thread name, event name, microseconds)`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "?")
                yield line.name, name, event.duration_ps / 1e6


def kernel_times(events, xla=False):
    """`{kind: (total microseconds, count)}` of the compute threads' events."""
    # XLA runs its kernels on Eigen's threads (`tf_numa...`) too.
    threads = ("tf_Compute", "tf_numa") if xla else ("tf_Compute",)
    totals = collections.defaultdict(lambda: [0.0, 0])
    for thread, name, micros in events:
        if thread.startswith(threads) and counted(name, xla):
            entry = totals[op_kind(name)]
            entry[0] += micros
            entry[1] += 1
    return totals


def offloaded(events):
    """`(kernels run on XLA's worker threads, microseconds the step's thread
    waited for them)`, in all.

    XLA's CPU runtime runs a compiled step's kernels on the thread that
    launched it while at most 8 are ready at once; past that it hands half
    of the ready ones to its worker threads (Eigen's, `tf_numa...`) and the
    launching thread waits (`BlockUntilReady`). For a step of small kernels
    (batch 1) that hand-over costs more than the kernels.
    """
    kernels, waited = 0, 0.0
    for thread, name, micros in events:
        if thread.startswith("tf_numa") and counted(name, xla=True):
            kernels += 1
        elif thread.startswith("tf_Compute") and name.startswith("BlockUntilReady"):
            waited += micros
    return kernels, waited


def main():
    args = parse_args()
    import numpy as np
    import tensorflow as tf

    model, callbacks = build(args)
    rng = np.random.default_rng(0)
    n = args.steps * args.batch
    x = rng.normal(size=(n, 784)).astype("float32")
    y = rng.integers(0, 10, n)
    fit = dict(batch_size=args.batch, verbose=0, callbacks=callbacks)
    model.fit(x, y, **fit)  # traced and compiled before the profile
    out = os.path.join(args.out, f"{args.variant}_b{args.batch}_jit{int(args.jit)}")
    tf.profiler.experimental.start(out)
    started = time.perf_counter()
    model.fit(x, y, **fit)
    seconds = time.perf_counter() - started
    tf.profiler.experimental.stop()
    path = sorted(glob.glob(os.path.join(out, "**", "*.xplane.pb"), recursive=True))
    events = list(read_profile(path[-1]))
    totals = kernel_times(events, xla=args.jit)
    print(f"{args.variant}: {1e6 * seconds / args.steps:.1f} us per step (profiled)")
    print(f"{'us/step':>9} {'per step':>8}  kind")
    ranked = sorted(totals.items(), key=lambda item: -item[1][0])
    for kind, (micros, count) in ranked[: args.top]:
        print(f"{micros / args.steps:9.1f} {count / args.steps:8.1f}  {kind}")
    kernels = sum(count for _, count in totals.values()) / args.steps
    micros = sum(micros for micros, _ in totals.values()) / args.steps
    print(f"{kernels:.0f} kernels per step in all, {micros:.0f} us per step in them")
    if args.jit:
        away, waited = offloaded(events)
        print(
            f"{away / args.steps:.0f} of them per step ran on XLA's worker "
            f"threads; the step's thread waited {waited / args.steps:.0f} us per "
            "step for them"
        )
    print(f"profile in {out}")


if __name__ == "__main__":
    main()
