"""A keras-tuner search from a validated config (the `tune` command's logic).

The results folder (`output.run_dir`) receives:

- `tuner/`: keras-tuner's project (oracle state, one folder per trial with
  its best-epoch weights). A rerun with the same config resumes from it
  (`overwrite=False`); a different config is refused unless
  `tune.overwrite` (or `--overwrite`) is set.
- `logs/`: TensorBoard logs, one folder per trial and execution:
  `logs/<trial>/execution<k>/` with `train/`, `validation/` (Keras
  scalars), `homeostasis/` (the Homeostasis dashboard) and the HParams
  dashboard's data.
- `trials.csv`, `trials.md`: every trial (see `tune_report`), rewritten
  after each trial.
- `best.yaml`: the config with the best trial's settings in `scaling`, which
  `keras-homeostasis train` accepts (it trains on the whole training set and
  reports the test accuracy).
- `config.yaml`: the resolved config of the search.

The last `tune.validation_split` of the training samples is held out as
validation data: the objective never sees the test set.
"""

import copy
import os
import time

import keras
import yaml

try:
    import keras_tuner
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "keras-homeostasis tune needs keras-tuner: pip install keras-tuner "
        "(or pip install keras-homeostasis[tuning])"
    ) from e

from keras_homeostasis.lab import config as config_lib
from keras_homeostasis.lab import models
from keras_homeostasis.lab import train
from keras_homeostasis.lab import tune_report
from keras_homeostasis.tuning import search_space as space_lib
from keras_homeostasis.tuning.homeostatic_hyper_model import HomeostaticHyperModel

# The methods whose settings `tune` searches: the callback, or the layers.
TUNABLE = ("scaling", *models.HOMEOSTATIC_LAYERS)
# Search-space parameters that choose the kind of homeostatic layer (its method).
LAYER_KIND = ("scale_invariant", "center_inputs")
# Search-space parameters that choose the callback's method.
CALLBACK_KIND = ("center_inputs", "hold_norms")
RESULT_FILES = ("tuner", "logs", "trials.csv", "trials.md", "best.yaml", "config.yaml")
# Keys that may change between a search and its resumption.
RESUMABLE_KEYS = {"tune": ("max_trials", "overwrite"), "output": ("run_dir",)}


def check_tunable(config):
    """Raises `ConfigError` when the config cannot be tuned."""
    normalization = config["model"]["normalization"]
    if normalization not in TUNABLE:
        raise config_lib.ConfigError(
            "`tune` searches the settings of SynapticScalingCallback or of the "
            f"homeostatic layers: set `model.normalization` to one of {TUNABLE}. "
            f"Received: model.normalization={normalization!r}"
        )
    try:
        space_lib.validate_for_model(
            config["tune"]["search_space"],
            normalization != "scaling",
            "tune.search_space",
            held_by_default=False,
        )
    except ValueError as e:
        raise config_lib.ConfigError(str(e)) from None
    if config["scaling"]["layer_targets"] is not None:
        raise config_lib.ConfigError(
            "`tune` draws the firing-rate set points itself: remove "
            "`scaling.layer_targets` and search per-layer `target_rate`s with "
            "`tune.search_space.per_layer_targets`."
        )


def split_validation(data, fraction):
    """`(train, validation)` from the training part of `data` (last fraction)."""
    (x, y), _ = data
    held_out = max(1, int(round(len(x) * fraction)))
    if held_out >= len(x):
        raise config_lib.ConfigError(
            f"`tune.validation_split` leaves no training data: {len(x)} training "
            f"samples, {held_out} held out. Received: "
            f"tune.validation_split={fraction}"
        )
    return (x[:-held_out], y[:-held_out]), (x[-held_out:], y[-held_out:])


def hypermodel_from_config(config, data, log_freq="epoch"):
    """A `HomeostaticHyperModel` for the config's model and `scaling` section."""

    normalization = config["model"]["normalization"]
    layers = normalization != "scaling"
    settings = config_lib.scaling_kwargs(config)

    def build_model(hp, trial_settings=None):
        if trial_settings is not None:
            # The trial may choose the kind of layer (`scale_invariant`,
            # `center_inputs`); otherwise the config's method gives it.
            kind = {k: trial_settings.pop(k) for k in LAYER_KIND if k in trial_settings}
            method = models.homeostatic_method(normalization, **kind)
            return train.build_compiled_model(
                config,
                data,
                config["model"]["architecture"],
                method,
                config["optimizer"],
                settings=trial_settings,
            )
        return train.build_compiled_model(
            config,
            data,
            config["model"]["architecture"],
            "scaling",
            config["optimizer"],
        )

    return HomeostaticHyperModel(
        build_model,
        layers=None if layers else config["scaling"]["layers"],
        search_space=config["tune"]["search_space"],
        settings=settings,
        entropy_weight=config["tune"]["entropy_weight"],
        log_freq=log_freq,
        seed=config["training"]["seed"],
        homeostatic_layers=layers,
        # `scaling` is the rule alone; the space may draw either option.
        callback_options=None if layers else models.CALLBACK_METHODS["scaling"],
    )


def objective(name):
    """The keras-tuner objective named in `tune.objective`."""
    direction = "min" if name == "val_loss" else "max"
    return keras_tuner.Objective(name, direction=direction)


def build_tuner(config, hypermodel, out_dir, overwrite=False, progress=None):
    """The tuner of `tune.tuner`, storing its project in `out_dir/tuner`."""
    tune = config["tune"]
    common = dict(
        objective=objective(tune["objective"]),
        seed=_seed(config),
        max_consecutive_failed_trials=tune["max_consecutive_failed_trials"],
        executions_per_trial=tune["executions_per_trial"],
        directory=out_dir,
        project_name="tuner",
        overwrite=overwrite,
    )
    if tune["tuner"] == "hyperband":
        cls = _with_progress(keras_tuner.Hyperband)
        tuner = cls(
            hypermodel,
            max_epochs=config["training"]["epochs"],
            factor=tune["hyperband_factor"],
            **common,
        )
    elif tune["tuner"] == "bayesian":
        cls = _with_progress(keras_tuner.BayesianOptimization)
        initial = tune["initial_points"] or max(2, tune["max_trials"] // 3)
        tuner = cls(
            hypermodel,
            max_trials=tune["max_trials"],
            num_initial_points=initial,
            **common,
        )
    else:
        cls = _with_progress(keras_tuner.RandomSearch)
        tuner = cls(hypermodel, max_trials=tune["max_trials"], **common)
    tuner.progress = progress
    return tuner


def _seed(config):
    seed = config["tune"]["seed"]
    return config["training"]["seed"] if seed is None else seed


def _with_progress(cls):
    class ProgressTuner(cls):
        """Calls `self.progress(tuner, trial)` after each trial."""

        progress = None

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            if self.progress is not None:
                self.progress(self, self.oracle.get_trial(trial.trial_id))

    ProgressTuner.__name__ = cls.__name__
    return ProgressTuner


def run_search(config, out_dir=None, data=None, verbose=1, log=print, overwrite=None):
    """Runs (or resumes) the config's search and writes the results folder.

    Args:
        config: a validated config whose `model.normalization` is one of
            `TUNABLE`.
        out_dir: the results folder (default `config["output"]["run_dir"]`).
        data: the data set, if already loaded (else `train.load_data`).
        verbose: 0 silent, 1 one line per trial, 2 also Keras' epoch lines.
        log: where progress lines go.
        overwrite: start afresh (default `config["tune"]["overwrite"]`).

    Returns:
        A dict with `out_dir`, `rows` (the trials table), `best_values`
        (the best trial's hyper-parameters, or None when no trial
        completed) and `best_config` (the path of best.yaml, or None).
    """
    check_tunable(config)
    out_dir = out_dir or config["output"]["run_dir"]
    overwrite = config["tune"]["overwrite"] if overwrite is None else overwrite
    os.makedirs(out_dir, exist_ok=True)
    _check_resumable(config, out_dir, overwrite)
    config_lib.dump_config(config, os.path.join(out_dir, "config.yaml"))
    data = train.load_data(config) if data is None else data
    (x_train, y_train), (x_val, y_val) = split_validation(
        data, config["tune"]["validation_split"]
    )
    hypermodel = hypermodel_from_config(config, data)
    clock = _Progress(config, out_dir, log if verbose else None)
    tuner = build_tuner(config, hypermodel, out_dir, overwrite, progress=clock)
    clock.start(tuner)
    try:
        tuner.search(
            x_train,
            y_train,
            epochs=config["training"]["epochs"],
            batch_size=config["data"]["batch_size"],
            validation_data=(x_val, y_val),
            callbacks=[
                keras.callbacks.TensorBoard(
                    log_dir=os.path.join(out_dir, "logs"), write_graph=False
                )
            ],
            verbose=2 if verbose >= 2 else 0,
        )
    except RuntimeError as e:
        # keras-tuner stops after `max_consecutive_failed_trials` failures.
        if "consecutive failures" not in str(e):
            raise
        result = write_results(tuner, config, out_dir)
        result["stopped"] = str(e).splitlines()[0]
        return result
    return write_results(tuner, config, out_dir)


def write_results(tuner, config, out_dir):
    """Writes trials.csv, trials.md and (when a trial completed) best.yaml."""
    rows = tune_report.trial_rows(tuner.oracle)
    tune_report.write_csv(rows, os.path.join(out_dir, "trials.csv"))
    name = config["tune"]["objective"]
    with open(os.path.join(out_dir, "trials.md"), "w", encoding="utf-8") as f:
        f.write("# Trials of the search\n\n" + tune_report.to_markdown(rows, name))
    best = [r for r in rows if r["best"]]
    result = {"out_dir": out_dir, "rows": rows, "best_values": None}
    result.update(best_config=None, best_trial=None, stopped=None)
    if best:
        trial = tuner.oracle.get_trial(best[0]["trial"])
        values = dict(trial.hyperparameters.values)
        path = os.path.join(out_dir, "best.yaml")
        config_lib.dump_config(best_config(config, values, out_dir), path)
        result.update(best_values=values, best_config=path, best_trial=best[0])
    return result


def best_config(config, values, out_dir):
    """The config to train the best trial's settings with `train`."""
    best = copy.deepcopy(config)
    updates = space_lib.config_updates(values)
    if best["model"]["normalization"] == "scaling":
        kind = {k: updates.pop(k) for k in CALLBACK_KIND if k in updates}
        best["model"]["normalization"] = models.callback_method(**kind)
    elif kind := {k: updates.pop(k) for k in LAYER_KIND if k in updates}:
        best["model"]["normalization"] = models.homeostatic_method(
            best["model"]["normalization"], **kind
        )
    best["scaling"].update(updates)
    best["output"]["run_dir"] = os.path.join(out_dir, "best_run")
    # Validate what `train` will read (also normalises the values).
    return config_lib.validate_config(_plain(best))


def _plain(config):
    # Round trip through YAML: plain Python types, as `train` will read them.
    return yaml.safe_load(yaml.safe_dump(_python(config)))


def _python(value):
    if isinstance(value, dict):
        return {k: _python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_python(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _identity(config):
    identity = _plain(config)
    for section, keys in RESUMABLE_KEYS.items():
        for key in keys:
            identity[section].pop(key, None)
    return identity


def _check_resumable(config, out_dir, overwrite):
    saved_path = os.path.join(out_dir, "config.yaml")
    if overwrite or not os.path.exists(os.path.join(out_dir, "tuner")):
        return
    if not os.path.exists(saved_path):
        return
    with open(saved_path, encoding="utf-8") as f:
        saved = yaml.safe_load(f)
    if _identity(saved) != _identity(config):
        raise config_lib.ConfigError(
            f"{out_dir!r} holds a search with another config ({saved_path}). "
            "Only `tune.max_trials` may change when resuming: use another "
            "output folder, or `--overwrite` to start afresh."
        )


class _Progress:
    """One line per finished trial, with the best so far and the time left."""

    def __init__(self, config, out_dir, log):
        self.config = config
        self.out_dir = out_dir
        self.log = log
        self.started = None
        self.done_before = 0

    def start(self, tuner):
        self.started = time.perf_counter()
        self.done_before = len(tuner.oracle.trials)
        if self.log and self.done_before:
            self.log(f"Resuming: {self.done_before} trials already in {self.out_dir}")

    def __call__(self, tuner, trial):
        result = write_results(tuner, self.config, self.out_dir)
        if self.log is None:
            return
        self.log(self._line(tuner, trial, result))

    def _line(self, tuner, trial, result):
        count = len(tuner.oracle.trials)
        total = "" if self.config["tune"]["tuner"] == "hyperband" else "/"
        total += "" if not total else str(self.config["tune"]["max_trials"])
        name = self.config["tune"]["objective"]
        if trial.status == "COMPLETED":
            outcome = f"{name}={trial.score:.4f}"
        else:
            row = next(r for r in result["rows"] if r["trial"] == trial.trial_id)
            outcome = f"{trial.status}: {row['reason']}"
        best = result.get("best_trial")
        best_text = (
            ""
            if best is None
            else (f"; best {best['objective']:.4f} (trial {best['trial']})")
        )
        return (
            f"[{count}{total}] trial {trial.trial_id} {outcome}{best_text}; "
            f"{self._elapsed(count)}"
        )

    def _elapsed(self, count):
        seconds = time.perf_counter() - self.started
        text = f"{seconds:.0f} s elapsed"
        run = count - self.done_before
        left = self.config["tune"]["max_trials"] - count
        if self.config["tune"]["tuner"] != "hyperband" and run > 0 and left > 0:
            text += f", about {seconds / run * left:.0f} s left"
        return text


def summary(result, config):
    """A few lines for the end of `keras-homeostasis tune`."""
    out = result["out_dir"]
    lines = []
    if result["stopped"]:
        lines.append(f"Search stopped: {result['stopped']}")
    best = result["best_trial"]
    if best is None:
        lines.append(f"No trial completed; see {os.path.join(out, 'trials.md')}.")
        return "\n".join(lines)
    name = config["tune"]["objective"]
    updates = space_lib.config_updates(result["best_values"])
    settings = ", ".join(f"{k}={_short(v)}" for k, v in updates.items())
    lines += [
        f"Best trial {best['trial']}: {name}={best['objective']:.4f} with {settings}",
        f"Trials: {os.path.join(out, 'trials.csv')} and trials.md; "
        f"TensorBoard: tensorboard --logdir {os.path.join(out, 'logs')}",
        f"Best config: {result['best_config']} "
        f"(keras-homeostasis train {result['best_config']})",
    ]
    return "\n".join(lines)


def _short(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)
