"""Whole `fit` epochs of one case's variants, timed as users run them.

Every variant of a case is built once, compiled with SGD (momentum 0.9, the
lab's `sgd`; plain SGD online, as continual learning runs), then fitted
`rounds` times in rotated order (each round a new `fit` on the same model
with the same callbacks, as a loop of `fit` calls runs), on the same random
data of MNIST shape. A clock around the other callbacks records every
epoch's wall time (`time.perf_counter`) and process CPU time
(`time.process_time`, all threads). The first epoch of a `fit` holds its
tracing and compiling; the steady state is the median of the later epochs.
Ratios to `none` are taken within a round, then the median over rounds, so
a change of machine load hits all variants alike.
"""

import contextlib
import statistics
import time

import keras
import numpy as np

from keras_homeostasis.lab.bench_cases import CLASSES
from keras_homeostasis.lab.bench_cases import INPUT_SHAPE


def build(
    variant,
    case,
    strategy=None,
    jit_compile="auto",
    steps_per_execution=1,
    momentum=0.9,
    period=1,
    silence_evidence=None,
):
    """The compiled model of `variant` for `case`, and its callbacks; the
    homeostatic variants run the rule every `period` steps, with
    `silence_evidence` (None: off)."""
    from keras_homeostasis.lab import models
    from keras_homeostasis.synaptic_scaling_callback import SynapticScalingCallback

    hidden = [case.width] * case.depth if case.model == "mlp" else None
    rule_settings = {"period": period, "silence_evidence": silence_evidence}
    with strategy.scope() if strategy else contextlib.nullcontext():
        keras.utils.set_random_seed(0)
        model = models.build_model(
            case.model,
            variant,
            INPUT_SHAPE,
            CLASSES,
            hidden=hidden,
            scaling_settings=rule_settings,
        )
        model.compile(
            optimizer=models.build_optimizer("sgd", momentum=momentum),
            loss="sparse_categorical_crossentropy",
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
        )
    if variant not in models.CALLBACK_METHODS:
        return model, []
    options = models.CALLBACK_METHODS[variant]
    return model, [SynapticScalingCallback(**rule_settings, **options)]


def random_data(batch, steps, seed=0):
    """`steps` batches of random MNIST-shaped images and labels."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch * steps, *INPUT_SHAPE), dtype=np.float32)
    y = rng.integers(0, CLASSES, batch * steps).astype("int32")
    return x, y


class EpochClock:
    """Wall and process CPU seconds of each epoch of each `fit`.

    `around(callbacks)` puts a starter before and a stopper after the given
    callbacks, so their epoch-begin and epoch-end work is timed too.
    """

    def __init__(self):
        self.fits = []  # per fit: [(wall, cpu), ...] per epoch
        self._start = None

    def around(self, callbacks):
        start = keras.callbacks.LambdaCallback(
            on_train_begin=lambda logs: self.fits.append([]),
            on_epoch_begin=lambda epoch, logs: self._begin(),
        )
        stop = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: self._end(logs)
        )
        return [start, *callbacks, stop]

    def _begin(self):
        self._start = (time.perf_counter(), time.process_time())

    def _end(self, logs):
        float(logs["loss"])  # waits for the epoch's last step
        wall, cpu = time.perf_counter(), time.process_time()
        self.fits[-1].append((wall - self._start[0], cpu - self._start[1]))


class VariantRun:
    """One variant's model, callbacks and clock; `fit` times one `fit` call."""

    def __init__(self, variant, case, **compile_options):
        self.variant = variant
        self.batch = case.batch
        self.model, self.callbacks = build(variant, case, **compile_options)
        self.clock = EpochClock()
        self.fits = []  # per fit: {"wall", "cpu", "epochs": [(wall, cpu), ...]}

    def fit(self, x, y, epochs):
        wall, cpu = time.perf_counter(), time.process_time()
        self.model.fit(
            x,
            y,
            batch_size=self.batch,
            epochs=epochs,
            verbose=0,
            callbacks=self.clock.around(self.callbacks),
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self.fits.append({"wall": wall, "cpu": cpu, "epochs": self.clock.fits[-1]})


def warm_up(strategy=None, **compile_options):
    """One untimed fit of a throwaway model: the process's first `fit` pays
    one-off start-up costs that no variant should be charged with."""
    from keras_homeostasis.lab.bench_cases import Case

    case = Case("mlp", 8, 1, 4)
    model, _ = build("none", case, strategy, **compile_options)
    steps_per_execution = compile_options.get("steps_per_execution", 1)
    x, y = random_data(4, steps_per_execution)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)


def run_rounds(case, variants, rounds, epochs, steps, **compile_options):
    """Fits every variant `rounds` times in rotated order; returns the runs."""
    x, y = random_data(case.batch, steps)
    runs = {v: VariantRun(v, case, **compile_options) for v in variants}
    for round_ in range(rounds):
        k = round_ % len(variants)
        for variant in variants[k:] + variants[:k]:
            runs[variant].fit(x, y, epochs)
    return runs


def _steady(fit, clock):
    """Median seconds of a fit's epochs after its first, on clock 0 or 1."""
    return statistics.median(epoch[clock] for epoch in fit["epochs"][1:])


def _ratios(run, none, value):
    return [value(f) / value(b) for f, b in zip(run.fits, none.fits)]


def summarize(run, none, steps):
    """The timing columns of one variant's row (see `bench_report`)."""
    steady_wall = [_steady(f, 0) for f in run.fits]
    steady_cpu = [_steady(f, 1) for f in run.fits]
    later = run.fits[1:]
    med = statistics.median
    return {
        "step_ms": round(1000 * med(steady_wall) / steps, 4),
        "cpu_step_ms": round(1000 * med(steady_cpu) / steps, 4),
        "ratio_wall": round(med(_ratios(run, none, lambda f: _steady(f, 0))), 4),
        "ratio_cpu": round(med(_ratios(run, none, lambda f: _steady(f, 1))), 4),
        "first_epoch_s": round(run.fits[0]["epochs"][0][0], 3),
        "first_epoch_cpu_s": round(run.fits[0]["epochs"][0][1], 3),
        "refit_first_epoch_s": round(med(f["epochs"][0][0] for f in later), 3),
        "refit_ratio_wall": round(med(_ratios(run, none, lambda f: f["wall"])[1:]), 4),
        "refit_ratio_cpu": round(med(_ratios(run, none, lambda f: f["cpu"])[1:]), 4),
    }


def state_sizes(model):
    """Float32 values of `(trainable weights, state)`: the state is every
    non-trainable float32 variable (homeostatic state, a centered layer's
    input mean, BatchNorm's moving statistics) and the callback's state on
    plain layers."""
    from keras_homeostasis.unit_state import UnitState

    def size(variables):
        return int(sum(np.prod(v.shape) for v in variables if v.dtype == "float32"))

    state = {id(v): v for v in model.non_trainable_variables}
    for layer in model.layers:
        held = getattr(layer, "homeostasis", None)
        if isinstance(held, UnitState):  # the callback's, on a plain layer
            state.update((id(v), v) for v in held.variables)
    return size(model.trainable_variables), size(state.values())


def rows_of(case, runs, steps):
    """One row per variant of `runs` (`{variant: VariantRun}`, with `none`)."""
    rows = []
    for variant, run in runs.items():
        weights, extra = state_sizes(run.model)
        rows.append(
            {
                **case._asdict(),
                "variant": variant,
                "steps": steps,
                **summarize(run, runs["none"], steps),
                "weights": weights,
                "extra_state": extra,
            }
        )
    return rows


def measure_case(case, variants, rounds, epochs, steps, **compile_options):
    """Times `variants` (the first must be `none`) on `case`: one row each."""
    if variants[0] != "none" or rounds < 2 or epochs < 2:
        raise ValueError("need `none` first, rounds >= 2 and epochs >= 2")
    runs = run_rounds(case, variants, rounds, epochs, steps, **compile_options)
    return rows_of(case, runs, steps)
