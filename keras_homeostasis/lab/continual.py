"""Online Permuted MNIST, after Dohare et al. 2024 (the `continual` command).

One network per method learns a sequence of tasks. Each task is the data set
under a new fixed random pixel permutation (seeded by `continual.seed` and
the task number); the task's `data.examples_per_task` examples (a seeded
random subset of the training set, in random order) are each seen once.

Per task, one row of `results.csv` (appended and flushed as soon as the
task ends, so an interrupted run loses at most the task in progress):

- `online_accuracy`: the fraction of the task's examples classified
  correctly by the forward pass just before the update on them. It is the
  `accuracy` of one epoch of `fit` over the task's examples with
  `batch_size=1`: Keras computes train-mode metrics on the predictions of the
  forward pass that precedes each update.
- `hidden_<k>_dead`: percentage of units of hidden block k whose post-ReLU
  output is zero on every one of the probe images (the first
  `data.probe_examples` images of the task, permuted), measured at the end of
  the task.
- `hidden_<k>_weight`: mean |w| of block k's kernel at the end of the task.
- `hidden_<k>_erank`: effective rank (Roy & Vetterli 2007, as Dohare et al.)
  of block k's post-ReLU representation of the probe images:
  `exp(-sum_k p_k log p_k)` with `p_k = sigma_k / sum(sigma)` the normalized
  singular values.
- `seconds`: the task's wall time (training and probing).

After each task the network (and its optimizer and homeostatic state) is
saved under `checkpoints/`, so a rerun skips the rows already present and
continues each method from its last finished task.

Methods: `backprop` (plain SGD), `l2` (SGD weight decay), `shrink_and_perturb`
(SGD weight decay, plus Gaussian noise added to every kernel and bias after
each step by an in-graph constraint), `batchnorm`, `layernorm` (Dense ->
norm -> ReLU), `scaling` (`SynapticScalingCallback` with the config's
`scaling` settings; `centered_scaling` with `center_inputs=True`,
`centered_offsets_scaling` with `center_gradients=False` too),
`scale_invariant_layers` (`HomeostaticDense` with
`scale_invariant=True` and the same settings), `centered_layers` (with
`center_inputs=True`) and `centered_scale_invariant_layers` (with both).

The config (schema, validation, loading) is `lab.continual_config`; its
names used by the command line, the tests and the tutorial are re-exported
here.
"""

import json
import os
import time

import keras
import numpy as np

from keras_homeostasis.lab.continual_config import METHODS  # noqa: F401
from keras_homeostasis.lab.continual_config import ContinualConfigError  # noqa: F401
from keras_homeostasis.lab.continual_config import fail
from keras_homeostasis.lab.continual_config import load_config  # noqa: F401
from keras_homeostasis.lab.continual_config import validate_config  # noqa: F401
from keras_homeostasis.lab.models import CALLBACK_METHODS
from keras_homeostasis.lab.models import HOMEOSTATIC_LAYERS
from keras_homeostasis.lab.models import callback_options
from keras_homeostasis.lab.models import layer_settings
from keras_homeostasis.lab.progress import clock
from keras_homeostasis.lab.results_csv import append_row
from keras_homeostasis.lab.results_csv import read_rows
from keras_homeostasis.layers import HomeostaticDense

NORMS = {"batchnorm": "batchnorm", "layernorm": "layernorm"}
KEY_COLUMNS = ("method", "task")
RESULT_COLUMNS = ("examples", "online_accuracy", "online_loss", "seconds")
LAYER_METRICS = ("dead", "weight", "erank")
CSV_NAME = "results.csv"


# ----------------------------------------------------------------------------
# The tasks.


def load_pool(config):
    """The training images, flattened to float32 `(n, pixels)`, and labels."""
    from keras_homeostasis.lab.data import load_dataset

    (x, y), _ = load_dataset(config["data"]["dataset"])
    x = x.reshape(len(x), -1).astype("float32")
    wanted = config["data"]["examples_per_task"]
    if wanted > len(x):
        fail(
            "data.examples_per_task",
            f"at most the {len(x)} training examples of the data set",
            wanted,
        )
    return x, y


def task_permutation(seed, task, pixels):
    """The fixed pixel permutation of task `task` (1, 2, ...) for `seed`."""
    return np.random.default_rng([seed, task, 0]).permutation(pixels)


def task_data(pool, seed, task, examples):
    """The examples of one task: a seeded subset, in a seeded order, permuted."""
    x, y = pool
    order = np.random.default_rng([seed, task, 1]).permutation(len(x))[:examples]
    permutation = task_permutation(seed, task, x.shape[1])
    return x[order][:, permutation], y[order]


# ----------------------------------------------------------------------------
# The networks.


@keras.saving.register_keras_serializable(package="keras_homeostasis")
class Perturb(keras.constraints.Constraint):
    """Adds `N(0, stddev^2)` noise to a variable after each optimizer step.

    Keras applies a variable's constraint right after each update, inside
    the compiled train function; the noise comes from a `SeedGenerator`
    whose state `reseed(seed, task)` sets, so a resumed run draws the same
    noise as an uninterrupted one.
    """

    def __init__(self, stddev, seed=0):
        self.stddev = float(stddev)
        self.seed = int(seed)
        self.generator = keras.random.SeedGenerator(self.seed)

    def __call__(self, w):
        noise = keras.random.normal(
            keras.ops.shape(w), stddev=self.stddev, dtype=w.dtype, seed=self.generator
        )
        return w + noise

    def reseed(self, seed, task):
        self.generator.state.assign(np.array([seed, task], dtype="uint32"))

    def get_config(self):
        return {"stddev": self.stddev, "seed": self.seed}


def build_model(config, method, pixels, classes):
    """A compiled MLP `pixels -> hidden... -> classes` for one method.

    Hidden block k's post-ReLU output is the layer `hidden_<k>`; for
    `batchnorm` and `layernorm` it is `hidden_<k>_linear` (Dense, no bias)
    -> `hidden_<k>_norm` -> ReLU `hidden_<k>`.
    """
    seed = config["continual"]["seed"]
    keras.utils.set_random_seed(seed)
    perturb = None
    if method == "shrink_and_perturb":
        perturb = Perturb(config["continual"]["perturb_std"], seed)
    inputs = keras.Input((pixels,))
    x = inputs
    for k, width in enumerate(config["model"]["hidden"], start=1):
        if method in NORMS:
            x = keras.layers.Dense(width, use_bias=False, name=f"hidden_{k}_linear")(x)
            norm = (
                keras.layers.BatchNormalization
                if method == "batchnorm"
                else keras.layers.LayerNormalization
            )
            x = norm(name=f"hidden_{k}_norm")(x)
            x = keras.layers.Activation("relu", name=f"hidden_{k}")(x)
        elif method in HOMEOSTATIC_LAYERS:
            rule = {k: v for k, v in config["scaling"].items() if k != "layers"}
            x = HomeostaticDense(
                width,
                activation="relu",
                name=f"hidden_{k}",
                **HOMEOSTATIC_LAYERS[method],
                **layer_settings(method, rule),
            )(x)
        else:
            x = keras.layers.Dense(
                width,
                activation="relu",
                kernel_constraint=perturb,
                bias_constraint=perturb,
                name=f"hidden_{k}",
            )(x)
    outputs = keras.layers.Dense(
        classes,
        activation="softmax",
        kernel_constraint=perturb,
        bias_constraint=perturb,
        name="output",
    )(x)
    model = keras.Model(inputs, outputs, name=f"continual_{method}")
    decay = config["continual"]["weight_decay"]
    training = config["training"]
    model.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate=training["learning_rate"],
            weight_decay=decay if method in ("l2", "shrink_and_perturb") else None,
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=training["steps_per_execution"],
        # keras.random.normal under XLA on CPU takes TensorFlow's slow
        # `auto_select` RNG path (about 30x slower than without XLA).
        jit_compile=training["jit_compile"] and perturb is None,
    )
    model.perturb = perturb
    return model


def method_callbacks(config, method):
    """The callbacks of a method's `fit` (one instance kept for every task)."""
    if method not in CALLBACK_METHODS:
        return []
    from keras_homeostasis import SynapticScalingCallback

    settings = {k: v for k, v in config["scaling"].items() if k != "norm_relaxation"}
    options = callback_options(method, config["scaling"].get("norm_relaxation"))
    return [SynapticScalingCallback(**settings, **options)]


# ----------------------------------------------------------------------------
# The measurements (pure numpy).


def dead_percentage(activations):
    """Percentage of units (columns) that are zero on every sample (row)."""
    activations = np.asarray(activations)
    return 100.0 * float(np.mean(np.all(activations == 0, axis=0)))


def effective_rank(representation):
    """Dohare et al.'s effective rank of a `(samples, units)` matrix.

    `exp(-sum_k p_k log p_k)` with `p_k = sigma_k / sum(sigma)` the singular
    values normalized to sum to 1 (Roy & Vetterli 2007). It is `n` for a
    matrix with `n` equal singular values, 1 for a rank-1 matrix, and 0 for
    an all-zero one.
    """
    sigma = np.linalg.svd(np.asarray(representation, "float64"), compute_uv=False)
    total = sigma.sum()
    if total <= 0:
        return 0.0
    p = sigma[sigma > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def hidden_count(config):
    return len(config["model"]["hidden"])


def probe(model, config, x_probe):
    """Dead %, mean |w| and effective rank of every hidden block, by column."""
    names = [f"hidden_{k}" for k in range(1, hidden_count(config) + 1)]
    features = keras.Model(
        model.inputs, [model.get_layer(name).output for name in names]
    )
    outputs = features.predict(x_probe, batch_size=500, verbose=0)
    row = {}
    for name, activations in zip(names, outputs):
        layer = model.get_layer(name)
        if not hasattr(layer, "kernel"):
            layer = model.get_layer(f"{name}_linear")
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        row[f"{name}_dead"] = f"{dead_percentage(activations):.2f}"
        row[f"{name}_weight"] = f"{float(np.mean(np.abs(kernel))):.6f}"
        row[f"{name}_erank"] = f"{effective_rank(activations):.2f}"
    return row


def online_task(model, config, x, y, callbacks=()):
    """Trains on one task's examples once; returns (online accuracy, loss)."""
    history = model.fit(
        x,
        y,
        batch_size=config["training"]["batch_size"],
        epochs=1,
        shuffle=False,
        callbacks=list(callbacks),
        verbose=0,
    )
    return history.history["accuracy"][-1], history.history["loss"][-1]


# ----------------------------------------------------------------------------
# results.csv, checkpoints and the run.


def columns(config):
    layers = [
        f"hidden_{k}_{metric}"
        for k in range(1, hidden_count(config) + 1)
        for metric in LAYER_METRICS
    ]
    return list(KEY_COLUMNS) + list(RESULT_COLUMNS) + layers


# Keys whose change makes earlier rows incomparable with new ones.
_RUN_IDENTITY = ("data", "model", "training", "scaling")


def check_same_run(out_dir, config):
    """Raises if `out_dir` holds results of a config with other settings."""
    path = os.path.join(out_dir, "continual_config.json")
    identity = {k: config[k] for k in _RUN_IDENTITY}
    identity["continual"] = {
        k: v for k, v in config["continual"].items() if k not in ("tasks", "methods")
    }
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        for section, values in identity.items():
            for key, value in values.items():
                old = saved.get(section, {}).get(key)
                if old != json.loads(json.dumps(value)):
                    raise ValueError(
                        f"{out_dir} holds a run with `{section}.{key}`={old!r}, "
                        f"not {value!r}. Pass another output folder (`--out`)."
                    )
    _write_json(path, identity)


def _write_json(path, value):
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1)
    os.replace(temporary, path)


def _checkpoint(out_dir, method):
    folder = os.path.join(out_dir, "checkpoints")
    return (
        os.path.join(folder, f"{method}.weights.h5"),
        os.path.join(folder, f"{method}.json"),
    )


def save_checkpoint(out_dir, method, model, row):
    """Saves the network after a task, with that task's row (atomically)."""
    weights, sidecar = _checkpoint(out_dir, method)
    os.makedirs(os.path.dirname(weights), exist_ok=True)
    temporary = weights.replace(".weights.h5", ".tmp.weights.h5")
    model.save_weights(temporary)
    os.replace(temporary, weights)
    _write_json(sidecar, row)


def restore(out_dir, method, model, done, csv_path, header):
    """Loads a method's last checkpoint; returns the last finished task.

    `done` is the set of the method's finished tasks in results.csv. A
    checkpoint one task ahead of the file (a crash between the two writes)
    gives its saved row to the file.
    """
    weights, sidecar = _checkpoint(out_dir, method)
    if not done:
        return 0
    last = max(done)
    if not os.path.exists(sidecar):
        raise ValueError(
            f"{csv_path} has {method} up to task {last} but {weights} is missing: "
            "the network cannot be resumed. Pass another output folder (`--out`)."
        )
    with open(sidecar, encoding="utf-8") as f:
        row = json.load(f)
    saved = int(row["task"])
    if saved == last + 1:
        append_row(csv_path, header, row)
        done.add(saved)
        last = saved
    if saved != last:
        raise ValueError(
            f"{weights} holds {method} after task {saved}, but {csv_path} ends "
            f"at task {last}. Pass another output folder (`--out`)."
        )
    model.load_weights(weights)
    return last


def run_method(config, method, pool, out_dir, done, progress):
    """Runs (or resumes) one method's tasks, appending a row per task."""
    csv_path = os.path.join(out_dir, CSV_NAME)
    header = columns(config)
    x_pool, y_pool = pool
    keras.backend.clear_session()
    model = build_model(config, method, x_pool.shape[1], int(y_pool.max()) + 1)
    callbacks = method_callbacks(config, method)
    for callback in callbacks:
        callback.set_model(model)  # Creates the homeostatic state to restore.
    last = restore(out_dir, method, model, done, csv_path, header)
    data = config["data"]
    seed = config["continual"]["seed"]
    for task in range(last + 1, config["continual"]["tasks"] + 1):
        start = time.perf_counter()
        x, y = task_data(pool, seed, task, data["examples_per_task"])
        if model.perturb is not None:
            model.perturb.reseed(seed, task)
        accuracy, loss = online_task(model, config, x, y, callbacks)
        row = {"method": method, "task": task, "examples": len(x)}
        row.update(online_accuracy=f"{accuracy:.6f}", online_loss=f"{loss:.6f}")
        row.update(probe(model, config, x[: data["probe_examples"]]))
        row["seconds"] = f"{time.perf_counter() - start:.2f}"
        save_checkpoint(out_dir, method, model, row)
        append_row(csv_path, header, row)
        progress(row)


def run_continual(config, out_dir=None, pool=None, log=print):
    """Runs (or resumes) every method of a config; returns the rows.

    Args:
        config: a validated `continual` config (`load_config`).
        out_dir: output folder (default `config["output"]["run_dir"]`).
        pool: `(x, y)` training pool, if already loaded (`load_pool`).
        log: function receiving one progress line per task.
    """
    from keras_homeostasis.lab import continual_report

    out_dir = out_dir or config["output"]["run_dir"]
    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, CSV_NAME)
    header = columns(config)
    rows = read_rows(csv_path, header)
    check_same_run(out_dir, config)
    methods = config["continual"]["methods"]
    tasks = config["continual"]["tasks"]
    done = {m: {int(r["task"]) for r in rows if r["method"] == m} for m in methods}
    total = len(methods) * tasks
    finished = sum(len({t for t in done[m] if t <= tasks}) for m in methods)
    if finished:
        log(f"Resuming: {finished} of {total} tasks are already in {csv_path}")
    progress = _Progress(total, finished, log)
    for method in methods:
        if all(t in done[method] for t in range(1, tasks + 1)):
            continue
        if pool is None:
            pool = load_pool(config)
        run_method(config, method, pool, out_dir, done[method], progress)
        continual_report.write_report(out_dir, read_rows(csv_path, header), config)
    rows = read_rows(csv_path, header)
    continual_report.write_report(out_dir, rows, config)
    return rows


class _Progress:
    """One line per finished task, with elapsed time and ETA."""

    def __init__(self, total, finished, log):
        self.total = total
        self.finished = finished
        self.count = 0
        self.started = time.perf_counter()
        self.log = log

    def __call__(self, row):
        from keras_homeostasis.lab.continual_report import layer_names

        self.count += 1
        self.finished += 1
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.count * (self.total - self.finished)
        layers = layer_names(row)
        dead = " ".join(f"{float(row[f'{n}_dead']):.0f}" for n in layers)
        erank = " ".join(f"{float(row[f'{n}_erank']):.0f}" for n in layers)
        self.log(
            f"[{self.finished}/{self.total}] {row['method']} task {row['task']}: "
            f"online accuracy {float(row['online_accuracy']):.4f}, dead % {dead}, "
            f"effective rank {erank} ({float(row['seconds']):.1f} s); "
            f"elapsed {clock(elapsed)}, ETA {clock(eta)}"
        )
