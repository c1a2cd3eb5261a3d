"""Comparing normalization methods (the `compare` command's logic).

Trains every (architecture, optimizer, seed, method) of a config's `compare`
section, and every learning rate of `compare.learning_rates` and batch size of
`compare.batch_sizes` when these axes are given, and writes, in the output
folder:

- `results.csv`: one row per run, appended (and flushed) as soon as the run
  finishes, so an interrupted comparison loses nothing already finished; a
  rerun skips the rows already present and resumes.
- `results.md`: per (architecture, optimizer, method), the mean and standard
  deviation over seeds of the test accuracy, the per-hidden-layer usage
  entropy, CV and dead fraction, the epochs needed to reach
  `accuracy_threshold` test accuracy, divergences (NaN loss) and the step time
  relative to `none`. Rewritten after every run. With the sweep axes, also
  the accuracy and usage per batch size and learning rate, the largest
  learning rate at which each method trains, and `accuracy_vs_batch_size.png`.

The sweep axes (each absent from results.csv unless its key is given, so the
results of configs without them keep their columns):

- `compare.batch_sizes`: each run trains on the first `compare.train_examples`
  training examples (`training.epochs` passes), so every batch size sees the
  same examples, in `epochs * ceil(train_examples / batch)` optimizer steps;
  the learning rate follows `compare.lr_scaling`: `lr * (batch /
  data.batch_size) ** k` (`learning_rate`), k = 1/2, 1 or 0.
- `compare.learning_rates`: the learning rate at `data.batch_size` of every
  optimizer (scaled like the others at other batch sizes).

`compare.steps_per_execution: auto` runs `min(250, steps per epoch // 4)`
steps per compiled call (at least 1): batch-1 epochs pay little Python per
step, and an epoch still has a few calls to time its steps with.
`compare.jit_compile` overrides `training.jit_compile` for the runs; every
method (norm layers, WeightNormalization and the scaling callback) compiles
with XLA on CPU, so there is no per-method fallback.

Usage is measured on the test set at each hidden block's post-ReLU output
(`models.hidden_layer_names`): after the norm layer and ReLU for `batchnorm`,
`layernorm` and `groupnorm`, at the Dense/Conv output (ReLU inside) for the
others. Step time is the median over epochs (the first epoch excluded when
there are several) of the wall time per training step, measured from the end
of each epoch's first batch, so tracing and compilation are not counted.
Ratios to `none` are most meaningful when the rows come from one process on
one machine.
"""

import math
import os
import statistics
import time

import keras

from keras_homeostasis.lab import compare_report
from keras_homeostasis.lab import config as config_lib
from keras_homeostasis.lab import models
from keras_homeostasis.lab import train
from keras_homeostasis.lab.progress import clock
from keras_homeostasis.lab.results_csv import append_row
from keras_homeostasis.lab.results_csv import read_rows

KEY_COLUMNS = ("dataset", "architecture", "optimizer", "method", "seed", "epochs")
# Key columns of the sweep axes, each present only when its `compare` key is.
SWEEP_COLUMNS = {
    "batch_sizes": "batch_size",
    "learning_rates": "learning_rate",
    "train_examples": "train_examples",
}
# Result columns of the runs of a config with any sweep key.
SWEEP_RESULT_COLUMNS = ("effective_learning_rate", "steps")
MAX_STEPS_PER_EXECUTION = 250
RESULT_COLUMNS = (
    "test_accuracy",
    "test_loss",
    "diverged",
    "epochs_to_threshold",
    "step_ms",
    "train_seconds",
    "params",
)
LAYER_METRICS = ("entropy", "cv", "dead")
CNN_HIDDEN_LAYERS = len(models.CNN_FILTERS) + 1


class _EpochProbe(keras.callbacks.Callback):
    """Records per-epoch step times and test accuracies (from validation)."""

    def __init__(self):
        super().__init__()
        self.step_seconds = []
        self.accuracies = []

    def on_epoch_begin(self, epoch, logs=None):
        self._first = None
        self._last = None

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._first is None:
            self._first = (batch, now)
        self._last = (batch, now)

    def on_epoch_end(self, epoch, logs=None):
        (b0, t0), (b1, t1) = self._first, self._last
        if b1 > b0:
            self.step_seconds.append((t1 - t0) / (b1 - b0))
        self.accuracies.append(float((logs or {}).get("val_accuracy", math.nan)))

    def step_ms(self):
        times = self.step_seconds[1:] or self.step_seconds
        return 1000.0 * statistics.median(times) if times else math.nan


def layer_names(config, architecture):
    """The hidden-layer names whose usage is reported for an architecture."""
    count = (
        CNN_HIDDEN_LAYERS if architecture == "cnn" else len(config["model"]["hidden"])
    )
    return [f"hidden_{k}" for k in range(1, count + 1)]


def key_columns(config):
    """The columns that identify a run: `KEY_COLUMNS`, then the sweep axes'."""
    compare = config["compare"]
    sweeps = [c for key, c in SWEEP_COLUMNS.items() if compare[key] is not None]
    return list(KEY_COLUMNS) + sweeps


def columns(config):
    """The results.csv header for a config (layers of the widest architecture)."""
    count = max(len(layer_names(config, a)) for a in config["compare"]["architectures"])
    layer_columns = [
        f"hidden_{k}_{metric}" for k in range(1, count + 1) for metric in LAYER_METRICS
    ]
    keys = key_columns(config)
    results = list(RESULT_COLUMNS)
    if len(keys) > len(KEY_COLUMNS):
        results += SWEEP_RESULT_COLUMNS
    return keys + results + layer_columns


def grid(config):
    """Every run of the comparison, as dicts of its key columns."""
    compare = config["compare"]
    sweeps = [{}]
    for key in ("learning_rates", "batch_sizes"):
        if compare[key] is not None:
            column = SWEEP_COLUMNS[key]
            sweeps = [{**s, column: v} for s in sweeps for v in compare[key]]
    if compare["train_examples"] is not None:
        sweeps = [{**s, "train_examples": compare["train_examples"]} for s in sweeps]
    runs = []
    for architecture in compare["architectures"]:
        for optimizer in compare["optimizers"]:
            for sweep in sweeps:
                for seed in compare["seeds"]:
                    for method in compare["methods"]:
                        runs.append(
                            {
                                "dataset": config["data"]["dataset"],
                                "architecture": architecture,
                                "optimizer": optimizer,
                                "method": method,
                                "seed": seed,
                                "epochs": config["training"]["epochs"],
                                **sweep,
                            }
                        )
    return runs


def run_key(run):
    """The identity of a run, as the strings results.csv holds."""
    values = dict(run)
    if isinstance(values["optimizer"], dict):
        values["optimizer"] = config_lib.optimizer_label(values["optimizer"])
    return tuple(str(values[c]) for c in _key_names(run))


def _key_names(run):
    return list(KEY_COLUMNS) + [c for c in SWEEP_COLUMNS.values() if c in run]


def _is_sweep(run):
    return any(c in run for c in SWEEP_COLUMNS.values())


def learning_rate(base, batch_size, reference_batch_size, rule):
    """`base * (batch_size / reference_batch_size) ** k`, k of `rule`.

    `rule` is a value of `compare.lr_scaling`: `sqrt` (k = 1/2), `linear`
    (k = 1) or `none` (k = 0).
    """
    exponent = config_lib.LR_SCALING[rule]
    return base * (batch_size / reference_batch_size) ** exponent


def run_learning_rate(config, run):
    """The learning rate a run trains with (its optimizer's, swept, scaled)."""
    optimizer = run["optimizer"]
    base = run.get("learning_rate", optimizer["learning_rate"])
    if base is None:
        base = models.OPTIMIZER_DEFAULTS[optimizer["name"]]["learning_rate"]
    reference = config["data"]["batch_size"]
    batch = run.get("batch_size", reference)
    return learning_rate(base, batch, reference, config["compare"]["lr_scaling"])


def steps_per_execution(config, steps_per_epoch):
    """`compare.steps_per_execution` resolved (`auto`: see the module doc)."""
    value = config["compare"]["steps_per_execution"]
    if value is None:
        return config["training"]["steps_per_execution"]
    if value == "auto":
        return max(1, min(MAX_STEPS_PER_EXECUTION, steps_per_epoch // 4))
    return value


def _run_setup(config, run, examples):
    """The config and optimizer section one run compiles with."""
    batch = run.get("batch_size", config["data"]["batch_size"])
    training = dict(config["training"])
    training["steps_per_execution"] = steps_per_execution(
        config, math.ceil(examples / batch)
    )
    if config["compare"]["jit_compile"] is not None:
        training["jit_compile"] = config["compare"]["jit_compile"]
    optimizer = run["optimizer"]
    if _is_sweep(run):
        optimizer = {**optimizer, "learning_rate": run_learning_rate(config, run)}
    return {**config, "training": training}, optimizer, batch


def check_train_examples(config, data):
    """Raises `ConfigError` when the training set is smaller than asked."""
    wanted = config["compare"]["train_examples"]
    available = len(data[0][0])
    if wanted is not None and wanted > available:
        raise config_lib.ConfigError(
            "Invalid config value for `compare.train_examples`: expected at most "
            f"the {available} training examples of `{config['data']['dataset']}` "
            f"(after `data.limit`). Received: compare.train_examples={wanted}"
        )


def run_one(config, data, run, verbose=0):
    """Trains one run of the grid; returns its results.csv row."""
    (x_train, y_train), (x_test, y_test) = data
    examples = run.get("train_examples", len(x_train))
    x_train, y_train = x_train[:examples], y_train[:examples]
    run_config, optimizer, batch_size = _run_setup(config, run, len(x_train))
    keras.backend.clear_session()
    model = train.build_compiled_model(
        run_config,
        data,
        run["architecture"],
        run["method"],
        optimizer,
        seed=run["seed"],
    )
    probe = _EpochProbe()
    start = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=run["epochs"],
        validation_data=(x_test, y_test),
        validation_batch_size=config["data"]["batch_size"],
        callbacks=train.scaling_callbacks(config, run["method"])
        + [keras.callbacks.TerminateOnNaN(), probe],
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(
        x_test, y_test, batch_size=config["data"]["batch_size"], verbose=0
    )
    row = dict(zip(_key_names(run), run_key(run)))
    row.update(
        test_accuracy=f"{accuracy:.6f}",
        test_loss=f"{loss:.6f}",
        diverged=int(train.diverged(history.history) or not math.isfinite(loss)),
        epochs_to_threshold=_first_epoch(
            probe.accuracies, config["compare"]["accuracy_threshold"]
        ),
        step_ms=f"{probe.step_ms():.4f}",
        train_seconds=f"{seconds:.2f}",
        params=model.count_params(),
    )
    if _is_sweep(run):
        row["effective_learning_rate"] = f"{optimizer['learning_rate']:.6g}"
        row["steps"] = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    report = train.usage_report(model, x_test)
    for name, metrics in report.layers.items():
        row[f"{name}_entropy"] = f"{metrics['usage_entropy']:.6f}"
        row[f"{name}_cv"] = f"{metrics['cv']:.6f}"
        row[f"{name}_dead"] = f"{metrics['dead_fraction']:.6f}"
    return row


def _first_epoch(accuracies, threshold):
    for epoch, accuracy in enumerate(accuracies, start=1):
        if accuracy >= threshold:
            return epoch
    return ""


def run_comparison(config, out_dir=None, data=None, verbose=0, log=print):
    """Runs (or resumes) a comparison; returns the rows of its grid.

    Args:
        config: a validated config with a `compare` section.
        out_dir: output folder (default `config["output"]["run_dir"]`).
        data: the data set, if already loaded (else loaded when needed).
        verbose: Keras' `fit` verbosity for each run.
        log: function receiving one progress line per run.
    """
    out_dir = out_dir or config["output"]["run_dir"]
    os.makedirs(out_dir, exist_ok=True)
    config_lib.dump_config(config, os.path.join(out_dir, "config.yaml"))
    csv_path = os.path.join(out_dir, "results.csv")
    md_path = os.path.join(out_dir, "results.md")
    header = columns(config)
    key_names = key_columns(config)
    runs = grid(config)
    keys = [run_key(run) for run in runs]
    done = {tuple(row[c] for c in key_names) for row in read_rows(csv_path, header)}
    todo = [run for run, key in zip(runs, keys) if key not in done]
    if len(todo) < len(runs):
        log(
            f"Resuming: {len(runs) - len(todo)} of {len(runs)} runs are already "
            f"in {csv_path}"
        )
    if todo and data is None:
        data = train.load_data(config)
    if todo:
        check_train_examples(config, data)
    started = time.perf_counter()
    for i, run in enumerate(todo, start=1):
        row = run_one(config, data, run, verbose=verbose)
        append_row(csv_path, header, row)
        rows = _rows_of(read_rows(csv_path, header), keys, key_names)
        compare_report.write_markdown(md_path, rows, config)
        elapsed = time.perf_counter() - started
        eta = elapsed / i * (len(todo) - i)
        log(_progress(i, len(todo), row, elapsed, eta))
    rows = _rows_of(read_rows(csv_path, header), keys, key_names)
    compare_report.write_markdown(md_path, rows, config)
    return rows


def _rows_of(rows, keys, key_names):
    wanted = set(keys)
    return [row for row in rows if tuple(row[c] for c in key_names) in wanted]


def _progress(i, total, row, elapsed, eta):
    flag = " DIVERGED" if row["diverged"] == 1 else ""
    sweep = "".join(
        f" {c}={row[c]}" for c in ("batch_size", "learning_rate") if c in row
    )
    return (
        f"[{i}/{total}] {row['architecture']} {row['optimizer']} {row['method']} "
        f"seed={row['seed']}{sweep}: "
        f"test accuracy {float(row['test_accuracy']):.4f}{flag} "
        f"({float(row['train_seconds']):.1f} s); elapsed {clock(elapsed)}, "
        f"ETA {clock(eta)}"
    )
