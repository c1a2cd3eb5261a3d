"""Training one model from a validated config (the `train` command's logic).

A run folder receives:

- `model.keras`: the trained model (loads with no `custom_objects`);
- `logs/`: TensorBoard logs written by `keras.callbacks.TensorBoard`;
- `history.csv`: per-epoch loss and accuracy (train and test);
- `usage.json`, `usage.md`, `usage.png`: the `UsageReport` of the hidden
  layers on the test set;
- `config.yaml`: the resolved config (every default filled in).

The test set serves as validation data, so the per-epoch test accuracy is in
the history and in TensorBoard; no model selection is done on it.
"""

import math
import os
import time
import warnings

import keras

from keras_homeostasis.lab import config as config_lib
from keras_homeostasis.lab import models
from keras_homeostasis.lab.data import load_dataset
from keras_homeostasis.metrics import UsageReport
from keras_homeostasis.synaptic_scaling_callback import SynapticScalingCallback

RUN_FILES = (
    "model.keras",
    "logs",
    "history.csv",
    "usage.json",
    "usage.md",
    "usage.png",
    "config.yaml",
)


def load_data(config):
    """The config's data set as `(x_train, y_train), (x_test, y_test)`."""
    data = config["data"]
    return load_dataset(data["dataset"], limit=data["limit"])


def build_compiled_model(
    config, data, architecture, normalization, optimizer, seed=None, settings=None
):
    """Seeds, builds and compiles a model for one setting of the config.

    Args:
        config: a validated config.
        data: `((x_train, y_train), (x_test, y_test))`.
        architecture: `"mlp"` or `"cnn"`.
        normalization: one of `models.NORMALIZATIONS`.
        optimizer: an optimizer section (mapping with `name`, ...).
        seed: random seed (default `config["training"]["seed"]`).
        settings: the homeostatic layers' arguments (default: the config's
            `scaling` section), e.g. a tuning trial's; scale-invariant layers
            take `scaling.norm_relaxation` unless it names its own.
    """
    (x_train, y_train), (_, y_test) = data
    keras.utils.set_random_seed(config["training"]["seed"] if seed is None else seed)
    settings = models.layer_settings(
        normalization,
        config_lib.scaling_kwargs(config) if settings is None else settings,
        config["scaling"]["norm_relaxation"],
    )
    model = models.build_model(
        architecture,
        normalization,
        x_train.shape[1:],
        int(max(y_train.max(), y_test.max())) + 1,
        hidden=config["model"]["hidden"],
        groups=config["model"]["groups"],
        scaling_settings=settings,
    )
    model.compile(
        optimizer=models.build_optimizer(**config_lib.optimizer_kwargs(optimizer)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=config["training"]["steps_per_execution"],
        jit_compile=config["training"]["jit_compile"],
    )
    return model


def scaling_callbacks(config, normalization, log_dir=None):
    """`[SynapticScalingCallback]` for the callback's methods
    (`models.CALLBACK_METHODS`), else `[]`.

    With `scaling.layer_targets`, one callback per named layer, each with its
    own `target_rate`. With `log_dir`, they write the Homeostasis dashboard there.
    """
    if normalization not in models.CALLBACK_METHODS:
        return []
    settings = {
        **config_lib.scaling_kwargs(config),
        **models.callback_options(normalization, config["scaling"]["norm_relaxation"]),
    }
    if log_dir is not None:
        settings = {**settings, "log_dir": log_dir}
    layer_targets = config["scaling"].get("layer_targets")
    if layer_targets:
        return [
            SynapticScalingCallback(layers=[name], **{**settings, "target_rate": rate})
            for name, rate in layer_targets.items()
        ]
    return [SynapticScalingCallback(layers=config["scaling"]["layers"], **settings)]


def homeostasis_callbacks(config, normalization, run_dir, x_probe):
    """The scaling callbacks, or a `HomeostasisLogger`: the Homeostasis dashboard.

    Written to `logs/homeostasis` of the run folder: by the scaling callbacks
    themselves for the `scaling` method, else by a logger measuring the hidden
    layers on a fixed probe batch of the test data.
    """
    log_dir = os.path.join(run_dir, "logs", "homeostasis")
    if normalization in models.CALLBACK_METHODS:
        return scaling_callbacks(config, normalization, log_dir=log_dir)
    from keras_homeostasis.tensorboard import HomeostasisLogger

    return [HomeostasisLogger(log_dir, probe_data=x_probe[:256])]


def usage_report(model, x):
    """`UsageReport` of the model's hidden blocks (post-ReLU) on `x`."""
    return UsageReport.from_model(model, x, layers=models.hidden_layer_names(model))


def train(config, run_dir=None, verbose=1, data=None):
    """Trains the config's model and writes a run folder.

    Args:
        config: a validated config (see `keras_homeostasis.lab.config`).
        run_dir: the run folder (default `config["output"]["run_dir"]`).
        verbose: Keras' `fit` verbosity (1 = progress bar).
        data: the data set, if already loaded (else `load_data(config)`).

    Returns:
        A dict with `run_dir`, `test_loss`, `test_accuracy`, `diverged`,
        `seconds` and the `report` (`UsageReport`).
    """
    run_dir = run_dir or config["output"]["run_dir"]
    os.makedirs(run_dir, exist_ok=True)
    config = {**config, "output": {**config["output"], "run_dir": run_dir}}
    config_lib.dump_config(config, os.path.join(run_dir, "config.yaml"))
    data = load_data(config) if data is None else data
    (x_train, y_train), (x_test, y_test) = data
    normalization = config["model"]["normalization"]
    model = build_compiled_model(
        config,
        data,
        config["model"]["architecture"],
        normalization,
        config["optimizer"],
    )
    callbacks = homeostasis_callbacks(config, normalization, run_dir, x_test) + [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv")),
        keras.callbacks.TensorBoard(log_dir=os.path.join(run_dir, "logs")),
    ]
    start = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        batch_size=config["data"]["batch_size"],
        epochs=config["training"]["epochs"],
        validation_data=(x_test, y_test),
        callbacks=callbacks,
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    test_loss, test_accuracy = model.evaluate(
        x_test, y_test, batch_size=config["data"]["batch_size"], verbose=0
    )
    model.save(os.path.join(run_dir, "model.keras"))
    report = usage_report(model, x_test)
    _write_usage(run_dir, report, config, test_loss, test_accuracy)
    return {
        "run_dir": run_dir,
        "test_loss": float(test_loss),
        "test_accuracy": float(test_accuracy),
        "diverged": diverged(history.history),
        "seconds": seconds,
        "report": report,
    }


def diverged(history):
    """True when any recorded loss is NaN or infinite."""
    losses = history.get("loss", []) + history.get("val_loss", [])
    return any(not math.isfinite(float(x)) for x in losses)


def _write_usage(run_dir, report, config, test_loss, test_accuracy):
    report.save(os.path.join(run_dir, "usage.json"))
    model = config["model"]
    header = [
        f"# Usage of the hidden units: {model['architecture']}, "
        f"{model['normalization']}",
        "",
        f"Data set: `{config['data']['dataset']}`; "
        f"optimizer: `{config_lib.optimizer_label(config['optimizer'])}`; "
        f"epochs: {config['training']['epochs']}; seed: {config['training']['seed']}.",
        "",
        f"Test accuracy: {test_accuracy:.4f}; test loss: {test_loss:.4f}.",
        "",
        "Measured on the test set at each hidden block's post-ReLU output.",
        "",
    ]
    with open(os.path.join(run_dir, "usage.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(header) + "\n" + report.to_markdown() + "\n")
    try:
        report.plot(os.path.join(run_dir, "usage.png"))
    except ImportError as e:
        warnings.warn(f"usage.png not written: {e}", stacklevel=2)
