"""Comparing normalization methods (the `compare` command's logic).

Trains every (architecture, optimizer, seed, method) of a config's `compare`
section and writes, in the output folder:

- `results.csv`: one row per run, appended (and flushed) as soon as the run
  finishes, so an interrupted comparison loses nothing already finished; a
  rerun skips the rows already present and resumes.
- `results.md`: per (architecture, optimizer, method), the mean and standard
  deviation over seeds of the test accuracy, the per-hidden-layer usage
  entropy, CV and dead fraction, the epochs needed to reach
  `accuracy_threshold` test accuracy, divergences (NaN loss) and the step time
  relative to `none`. Rewritten after every run.

Usage is measured on the test set at each hidden block's post-ReLU output
(`models.hidden_layer_names`): after the norm layer and ReLU for `batchnorm`,
`layernorm` and `groupnorm`, at the Dense/Conv output (ReLU inside) for the
others. Step time is the median over epochs (the first epoch excluded when
there are several) of the wall time per training step, measured from the end
of each epoch's first batch, so tracing and compilation are not counted.
Ratios to `none` are most meaningful when the rows come from one process on
one machine.
"""

import csv
import math
import os
import statistics
import time

import keras

from keras_homeostasis.lab import compare_report
from keras_homeostasis.lab import config as config_lib
from keras_homeostasis.lab import models
from keras_homeostasis.lab import train

KEY_COLUMNS = ("dataset", "architecture", "optimizer", "method", "seed", "epochs")
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


def columns(config):
    """The results.csv header for a config (layers of the widest architecture)."""
    count = max(len(layer_names(config, a)) for a in config["compare"]["architectures"])
    layer_columns = [
        f"hidden_{k}_{metric}" for k in range(1, count + 1) for metric in LAYER_METRICS
    ]
    return list(KEY_COLUMNS) + list(RESULT_COLUMNS) + layer_columns


def grid(config):
    """Every run of the comparison, as dicts of the key columns."""
    compare = config["compare"]
    runs = []
    for architecture in compare["architectures"]:
        for optimizer in compare["optimizers"]:
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
                        }
                    )
    return runs


def run_key(run):
    """The identity of a run, as the strings results.csv holds."""
    values = dict(run)
    if isinstance(values["optimizer"], dict):
        values["optimizer"] = config_lib.optimizer_label(values["optimizer"])
    return tuple(str(values[c]) for c in KEY_COLUMNS)


def run_one(config, data, run, verbose=0):
    """Trains one run of the grid; returns its results.csv row."""
    (x_train, y_train), (x_test, y_test) = data
    keras.backend.clear_session()
    model = train.build_compiled_model(
        config,
        data,
        run["architecture"],
        run["method"],
        run["optimizer"],
        seed=run["seed"],
    )
    probe = _EpochProbe()
    start = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        batch_size=config["data"]["batch_size"],
        epochs=run["epochs"],
        validation_data=(x_test, y_test),
        callbacks=train.scaling_callbacks(config, run["method"])
        + [keras.callbacks.TerminateOnNaN(), probe],
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(
        x_test, y_test, batch_size=config["data"]["batch_size"], verbose=0
    )
    row = dict(zip(KEY_COLUMNS, run_key(run)))
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


def read_rows(path, header):
    """Rows already in results.csv; raises if it belongs to another comparison."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != header:
            raise ValueError(
                f"{path} has the columns {reader.fieldnames}, not those of this "
                f"comparison ({header}). Pass another output folder (`--out`)."
            )
        return list(reader)


def append_row(path, header, row):
    """Appends one row (writing the header first) and flushes it to disk."""
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, restval="")
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


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
    runs = grid(config)
    keys = [run_key(run) for run in runs]
    done = {tuple(row[c] for c in KEY_COLUMNS) for row in read_rows(csv_path, header)}
    todo = [run for run, key in zip(runs, keys) if key not in done]
    if len(todo) < len(runs):
        log(
            f"Resuming: {len(runs) - len(todo)} of {len(runs)} runs are already "
            f"in {csv_path}"
        )
    if todo and data is None:
        data = train.load_data(config)
    started = time.perf_counter()
    for i, run in enumerate(todo, start=1):
        row = run_one(config, data, run, verbose=verbose)
        append_row(csv_path, header, row)
        rows = _rows_of(read_rows(csv_path, header), keys)
        compare_report.write_markdown(md_path, rows, config)
        elapsed = time.perf_counter() - started
        eta = elapsed / i * (len(todo) - i)
        log(_progress(i, len(todo), row, elapsed, eta))
    rows = _rows_of(read_rows(csv_path, header), keys)
    compare_report.write_markdown(md_path, rows, config)
    return rows


def _rows_of(rows, keys):
    wanted = set(keys)
    return [row for row in rows if tuple(row[c] for c in KEY_COLUMNS) in wanted]


def _progress(i, total, row, elapsed, eta):
    flag = " DIVERGED" if row["diverged"] == 1 else ""
    return (
        f"[{i}/{total}] {row['architecture']} {row['optimizer']} {row['method']} "
        f"seed={row['seed']}: test accuracy {float(row['test_accuracy']):.4f}{flag} "
        f"({float(row['train_seconds']):.1f} s); elapsed {_clock(elapsed)}, "
        f"ETA {_clock(eta)}"
    )


def _clock(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{seconds:02d}s"
    return f"{minutes}m{seconds:02d}s"
