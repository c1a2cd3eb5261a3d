"""`HomeostaticHyperModel` under keras-tuner's RandomSearch, Bayesian, Hyperband."""

import copy
import glob
import os

import keras
import keras_tuner
import numpy as np
import pytest
from tuning_testing import small_digits
from tuning_testing import tiny_model

from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis.tensorboard import HomeostasisLogger
from keras_homeostasis.tuning import HomeostaticHyperModel
from keras_homeostasis.tuning import UsageEntropyCallback
from keras_homeostasis.tuning import homeostasis_objective
from keras_homeostasis.tuning import search_space as space_lib
from keras_homeostasis.unit_state import UnitState

NOTHING_SEARCHED = {name: None for name in space_lib.PARAMETERS}


def _fit_kwargs(digits, epochs=1):
    (x, y), validation = digits
    return dict(
        x=x, y=y, epochs=epochs, batch_size=32, validation_data=validation, verbose=0
    )


def _tuner(cls, hypermodel, path, **kwargs):
    kwargs.setdefault("objective", "val_accuracy")
    return cls(hypermodel, directory=str(path), project_name="search", **kwargs)


def test_build_registers_the_space_and_creates_the_state():
    hypermodel = HomeostaticHyperModel(tiny_model)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    names = {p.name for p in hp.space}
    assert {
        "scaling/rate",
        "scaling/bias_rate",
        "scaling/target_mode",
        "scaling/target_rate",
        "scaling/period",
    } <= names
    scaled = [
        x.name
        for x in model.layers
        if isinstance(getattr(x, "homeostasis", None), UnitState)
    ]
    # The state exists before fit, so checkpoints always carry it.
    assert scaled == ["hidden_1", "hidden_2"]


def test_callbacks_survive_deepcopy(tmp_path):
    x = np.zeros((8, 8, 8, 1), "float32")
    callbacks = [
        SynapticScalingCallback(log_dir=str(tmp_path / "a"), rate=0.1),
        HomeostasisLogger(str(tmp_path / "b"), update_freq=5, probe_data=x),
        UsageEntropyCallback(x, entropy_weight=0.3),
        keras.callbacks.TensorBoard(str(tmp_path / "c")),
    ]
    hypermodel = HomeostaticHyperModel(tiny_model, log_dir=str(tmp_path / "d"))
    model = tiny_model()
    callbacks += hypermodel.scaling_callbacks(
        keras_tuner.HyperParameters(), model, log_dir=str(tmp_path / "e")
    )
    copies = copy.deepcopy(callbacks)  # What keras-tuner does for each execution.
    for original, copied in zip(callbacks, copies):
        assert copied is not original and type(copied) is type(original)
        if hasattr(original, "get_config") and not isinstance(
            original, keras.callbacks.TensorBoard
        ):
            a, b = original.get_config(), copied.get_config()
            assert {k: v for k, v in a.items() if k != "validation_data"} == {
                k: v for k, v in b.items() if k != "validation_data"
            }
    assert copy.deepcopy(hypermodel).search_space == hypermodel.search_space


@pytest.mark.parametrize(
    "kind", ["random", pytest.param("bayesian", marks=pytest.mark.slow)]
)
def test_two_trial_search_completes(digits, tmp_path, kind):
    hypermodel = HomeostaticHyperModel(tiny_model, entropy_weight=0.1, seed=0)
    if kind == "random":
        tuner = _tuner(
            keras_tuner.RandomSearch,
            hypermodel,
            tmp_path,
            objective=homeostasis_objective(),
            max_trials=2,
            seed=1,
        )
    else:
        tuner = _tuner(
            keras_tuner.BayesianOptimization,
            hypermodel,
            tmp_path,
            objective=homeostasis_objective(),
            max_trials=2,
            num_initial_points=1,
            seed=1,
        )
    logs = tmp_path / "logs"
    tuner.search(
        **_fit_kwargs(digits), callbacks=[keras.callbacks.TensorBoard(str(logs))]
    )
    trials = list(tuner.oracle.trials.values())
    assert [t.status for t in trials] == ["COMPLETED", "COMPLETED"]
    for trial in trials:
        score = trial.metrics.get_last_value("val_homeostasis_score")
        accuracy = trial.metrics.get_last_value("val_accuracy")
        entropy = trial.metrics.get_last_value("val_usage_entropy")
        assert score == pytest.approx(accuracy + 0.1 * entropy)
        # Each trial has its own TensorBoard folder, homeostasis included.
        folder = logs / str(trial.trial_id) / "execution0"
        assert glob.glob(str(folder / "homeostasis" / "events.out.tfevents.*"))
        assert glob.glob(str(folder / "train" / "events.out.tfevents.*"))
    (best,) = tuner.get_best_models(1)
    state = best.get_layer("hidden_1").homeostasis
    assert int(keras.ops.convert_to_numpy(state.steps)) > 0  # restored, not fresh


def test_own_log_dir_gives_a_folder_per_trial(digits, tmp_path):
    hypermodel = HomeostaticHyperModel(
        tiny_model, search_space=NOTHING_SEARCHED, log_dir=str(tmp_path / "hs")
    )

    def build(hp):
        return tiny_model(learning_rate=hp.Choice("lr", [1e-2, 1e-3]))

    hypermodel.build_model = build
    tuner = _tuner(keras_tuner.RandomSearch, hypermodel, tmp_path, max_trials=2)
    tuner.search(**_fit_kwargs(digits))
    for trial_id in tuner.oracle.trials:
        folder = tmp_path / "hs" / str(trial_id) / "execution0"
        assert glob.glob(str(folder / "events.out.tfevents.*")), folder


def test_per_layer_targets_train_one_callback_per_layer(digits):
    (x, y), _ = digits
    hypermodel = HomeostaticHyperModel(
        tiny_model,
        search_space={"target_mode": "absolute", "per_layer_targets": True},
    )
    hp = keras_tuner.HyperParameters()
    hp.values["scaling/layer_targets/hidden_1"] = 0.6
    hp.values["scaling/layer_targets/hidden_2"] = 0.35
    model = hypermodel.build(hp)
    callbacks = hypermodel.scaling_callbacks(hp, model)
    assert [(c.layers, c.settings["target_rate"]) for c in callbacks] == [
        (["hidden_1"], 0.6),
        (["hidden_2"], 0.35),
    ]
    for _ in range(2):  # Installed and removed cleanly, twice.
        hypermodel.fit(hp, model, x, y, epochs=1, batch_size=32, verbose=0)
        assert not any("call" in vars(layer) for layer in [model, *model.layers])
    for name in ("hidden_1", "hidden_2"):
        steps = model.get_layer(name).homeostasis.steps
        assert int(keras.ops.convert_to_numpy(steps)) == 2 * len(x) // 32


class _NanAfter(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate that turns NaN after `steps` steps: training diverges."""

    def __init__(self, steps, rate):
        self.steps = steps
        self.rate = rate

    def __call__(self, step):
        return keras.ops.where(step < self.steps, self.rate, float("nan"))

    def get_config(self):
        return {"steps": self.steps, "rate": self.rate}


class _Recorder(keras.callbacks.Callback):
    # A class attribute: keras-tuner's deep copies all write here.
    seen = {}

    def on_epoch_end(self, epoch, logs=None):
        self.seen.setdefault(self.model.name, []).append(logs["val_accuracy"])


def test_diverged_trial_is_never_chosen(digits, tmp_path):
    def build(hp):
        if hp.Boolean("diverge"):
            # Learns for one epoch (4 steps), then NaN: a good first epoch.
            return tiny_model(learning_rate=_NanAfter(4, 0.05), name="diverging")
        return tiny_model(learning_rate=0.0, name="frozen")

    _Recorder.seen = {}
    hypermodel = HomeostaticHyperModel(build, search_space=NOTHING_SEARCHED, seed=0)
    tuner = _tuner(keras_tuner.RandomSearch, hypermodel, tmp_path, max_trials=2, seed=0)
    tuner.search(**_fit_kwargs(digits, epochs=2), callbacks=[_Recorder()])
    seen = _Recorder.seen
    # Without the divergence check, the diverging trial's first epoch would win.
    assert seen["diverging"][0] > max(seen["frozen"])
    status = {
        t.hyperparameters["diverge"]: t.status for t in tuner.oracle.trials.values()
    }
    assert status == {True: "FAILED", False: "COMPLETED"}
    failed = next(t for t in tuner.oracle.trials.values() if t.status == "FAILED")
    assert "diverged" in failed.message
    assert tuner.get_best_hyperparameters(1)[0]["diverge"] is False
    assert tuner.oracle.get_best_trials(1)[0].status == "COMPLETED"


class _CountingHyperModel(HomeostaticHyperModel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fits = 0

    def fit(self, hp, model, *args, **kwargs):
        self.fits += 1
        return super().fit(hp, model, *args, **kwargs)


def test_search_resumes_with_overwrite_false(digits, tmp_path):
    first = _CountingHyperModel(tiny_model, seed=0)
    tuner = _tuner(keras_tuner.RandomSearch, first, tmp_path, max_trials=1, seed=2)
    tuner.search(**_fit_kwargs(digits))
    (done,) = tuner.oracle.trials.values()
    values, score = dict(done.hyperparameters.values), done.score

    second = _CountingHyperModel(tiny_model, seed=0)
    resumed = _tuner(
        keras_tuner.RandomSearch,
        second,
        tmp_path,
        max_trials=2,
        seed=2,
        overwrite=False,
    )
    assert len(resumed.oracle.trials) == 1  # Reloaded before searching.
    resumed.search(**_fit_kwargs(digits))
    assert second.fits == 1  # Only the missing trial ran.
    trials = list(resumed.oracle.trials.values())
    assert len(trials) == 2 and all(t.status == "COMPLETED" for t in trials)
    kept = resumed.oracle.get_trial(done.trial_id)
    assert kept.hyperparameters.values == values and kept.score == score


class _ScoredHyperModel(HomeostaticHyperModel):
    """Scores a trial from its values without training (proposals only)."""

    def fit(self, hp, model, *args, **kwargs):
        return -abs(np.log(hp["scaling/rate"] / 0.05)) - abs(hp["scaling/period"] - 4)


# Two searched parameters keep the Gaussian process's proposals quick.
TWO_SEARCHED = {
    **NOTHING_SEARCHED,
    "rate": {"min": 0.01, "max": 0.5, "sampling": "log"},
    "period": {"min": 1, "max": 16, "sampling": "log"},
}


def _proposals(tmp_path, cls, seed, **kwargs):
    tuner = _tuner(
        cls,
        _ScoredHyperModel(tiny_model, search_space=TWO_SEARCHED),
        tmp_path / f"{cls.__name__}_{seed}_{len(os.listdir(tmp_path))}",
        objective=keras_tuner.Objective("score", "max"),
        seed=seed,
        **kwargs,
    )
    tuner.search(verbose=0)
    return [
        tuner.oracle.trials[i].hyperparameters.values
        for i in sorted(tuner.oracle.trials)
    ]


# Few points: the Gaussian process's length scales may hit their bounds.
@pytest.mark.filterwarnings("ignore:The optimal value found")
@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (keras_tuner.RandomSearch, {}),
        (keras_tuner.BayesianOptimization, {"num_initial_points": 2}),
    ],
    ids=["random", "bayesian"],
)
def test_seeded_searches_propose_the_same_sequence(tmp_path, cls, kwargs):
    # Bayesian: 2 random proposals, then one from the Gaussian process.
    first = _proposals(tmp_path, cls, 11, max_trials=3, **kwargs)
    again = _proposals(tmp_path, cls, 11, max_trials=3, **kwargs)
    other = _proposals(tmp_path, cls, 12, max_trials=1, **kwargs)
    assert len(first) == 3
    assert first == again
    assert first[:1] != other


def test_every_sampled_configuration_builds_and_trains(digits):
    (x, y), validation = digits
    hypermodel = HomeostaticHyperModel(tiny_model, seed=0)
    space = keras_tuner.HyperParameters()
    hypermodel.build(space)
    rng = np.random.default_rng(0)
    # The lower and upper corners of every range, then random draws.
    for probability in [0.0, 0.999999, *rng.uniform(size=2)]:
        hp = keras_tuner.HyperParameters()
        for parameter in space.space:
            hp.values[parameter.name] = parameter.prob_to_value(probability)
        model = hypermodel.build(hp)
        history = hypermodel.fit(
            hp,
            model,
            x[:32],
            y[:32],
            epochs=1,
            batch_size=32,
            validation_data=(validation[0][:32], validation[1][:32]),
            verbose=0,
        )
        assert np.isfinite(history.history["loss"][0]), hp.values


@pytest.mark.slow
def test_hyperband_continues_trials_with_their_homeostatic_state(digits, tmp_path):
    steps_at_start = {}

    class Recording(HomeostaticHyperModel):
        def fit(self, hp, model, *args, **kwargs):
            steps = model.get_layer("hidden_1").homeostasis.steps
            key = (hp.values.get("tuner/trial_id"), hp.values["tuner/initial_epoch"])
            steps_at_start[key] = (
                int(keras.ops.convert_to_numpy(steps)),
                int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
            )
            return super().fit(hp, model, *args, **kwargs)

    tuner = _tuner(
        keras_tuner.Hyperband,
        Recording(tiny_model, seed=0),
        tmp_path,
        max_epochs=2,
        factor=2,
        seed=3,
    )
    tuner.search(**_fit_kwargs(digits, epochs=2))
    trials = list(tuner.oracle.trials.values())
    assert all(t.status == "COMPLETED" for t in trials)
    continued = {k: v for k, v in steps_at_start.items() if k[0] is not None}
    assert continued
    # A continued trial starts from the past trial's checkpoint: homeostatic
    # state and optimizer state included.
    assert all(steps > 0 and it > 0 for steps, it in continued.values())
    assert all(v == (0, 0) for k, v in steps_at_start.items() if k[0] is None)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"build_model": "model"}, "build_model"),
        ({"entropy_weight": -0.1}, "entropy_weight"),
        ({"seed": -1}, "seed"),
        ({"log_freq": 0}, "log_freq"),
        ({"layers": 3}, "layers"),
        ({"search_space": {"rate": 2.0}}, "search_space.rate"),
        ({"search_space": {"target_rate": None}}, "search_space.target_rate"),
        ({"settings": {"rate": 0.0}}, "rate"),
        ({"settings": {"target_rate": 1.0}}, "target_rate"),
        ({"callback_options": {"rate": 0.1}}, "callback_options"),
        # The callback holds norms by default: gain bounds need it said.
        ({"search_space": {"min_gain": [0.5, 0.8]}}, "search_space.min_gain"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    kwargs = {"build_model": tiny_model, **kwargs}
    with pytest.raises((TypeError, ValueError), match=f"`{name}`"):
        HomeostaticHyperModel(**kwargs)


def test_callback_options_shape_every_trials_callback():
    default = HomeostaticHyperModel(tiny_model)
    hp = keras_tuner.HyperParameters()
    (callback,) = default.scaling_callbacks(hp, default.build(hp))
    assert callback.center_inputs and callback.hold_norms
    alone = HomeostaticHyperModel(
        tiny_model,
        search_space={"min_gain": [0.5, 0.8]},
        callback_options={"center_inputs": False, "hold_norms": False},
    )
    hp = keras_tuner.HyperParameters()
    (callback,) = alone.scaling_callbacks(hp, alone.build(hp))
    assert not callback.center_inputs and not callback.hold_norms
    assert callback.settings["min_gain"] == 0.5


def _layers_model(hp, settings):
    from keras_homeostasis.layers import HomeostaticDense

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            HomeostaticDense(16, activation="relu", name="hidden_1", **settings),
            keras.layers.Dense(10, activation="softmax", name="output"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_homeostatic_layers_take_the_trials_settings(tmp_path):
    space = {"scale_invariant": True, "norm_relaxation": 1e-3, "rate": 0.2}
    hypermodel = HomeostaticHyperModel(
        _layers_model, search_space=space, homeostatic_layers=True, seed=0
    )
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    layer = model.get_layer("hidden_1")
    assert layer.scale_invariant and layer.norm_relaxation == 1e-3
    assert layer.homeostasis_settings["rate"] == 0.2
    assert hp.values["scaling/scale_invariant"] is True
    # No callback: the layers scale themselves; the logger reads their state.
    assert hypermodel.scaling_callbacks(hp, model) == []
    (logger,) = hypermodel.scaling_callbacks(hp, model, log_dir=str(tmp_path))
    assert isinstance(logger, HomeostasisLogger)
    (x, y), validation = small_digits()
    history = hypermodel.fit(hp, model, x, y, validation_data=validation, verbose=0)
    assert 0.0 < history.history["val_usage_entropy"][0] <= 1.0
    assert int(layer.homeostasis.steps.numpy()) == 4  # 128 digits, batch 32


def test_homeostatic_layers_refuse_plain_models_and_per_layer_targets():
    hypermodel = HomeostaticHyperModel(
        lambda hp, settings: tiny_model(hp), homeostatic_layers=True
    )
    with pytest.raises(keras_tuner.errors.FatalValueError, match="homeostatic"):
        hypermodel.build(keras_tuner.HyperParameters())
    with pytest.raises(ValueError, match="per_layer_targets"):
        HomeostaticHyperModel(
            _layers_model,
            search_space={"target_mode": "absolute", "per_layer_targets": True},
            homeostatic_layers=True,
        )
    with pytest.raises(ValueError, match="homeostatic_layers=True"):
        HomeostaticHyperModel(tiny_model, search_space={"scale_invariant": True})
    with pytest.raises(TypeError, match="homeostatic_layers='yes'"):
        HomeostaticHyperModel(tiny_model, homeostatic_layers="yes")


def test_hyperband_continues_scale_invariant_trials_with_their_gains(digits, tmp_path):
    at_start = {}

    class Recording(HomeostaticHyperModel):
        def fit(self, hp, model, *args, **kwargs):
            state = model.get_layer("hidden_1").homeostasis
            key = (hp.values.get("tuner/trial_id"), hp.values["tuner/initial_epoch"])
            at_start[key] = (
                int(keras.ops.convert_to_numpy(state.steps)),
                keras.ops.convert_to_numpy(state.log_gain).copy(),
            )
            return super().fit(hp, model, *args, **kwargs)

    hypermodel = Recording(
        _layers_model,
        search_space={"scale_invariant": True, "norm_relaxation": [0.0, 1e-3]},
        homeostatic_layers=True,
        seed=0,
    )
    tuner = _tuner(keras_tuner.Hyperband, hypermodel, tmp_path, max_epochs=2, factor=2)
    tuner.search(**_fit_kwargs(digits, epochs=2))
    assert all(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
    fresh = [v for k, v in at_start.items() if k[0] is None]
    continued = [v for k, v in at_start.items() if k[0] is not None]
    assert fresh and continued
    # Every fresh trial starts from the same seeded weights: gains at the
    # initial norms. A continued one starts from its past trial's
    # checkpoint: the gains the rule moved, and the steps counted.
    initial = fresh[0][1]
    assert all(steps == 0 and np.allclose(g, initial) for steps, g in fresh)
    assert all(steps > 0 and not np.allclose(g, initial) for steps, g in continued)


def _callback_drawing(search_space, **drawn):
    """The trial's callback of a hypermodel of `search_space`, with the
    Boolean hyper-parameters `drawn` set as a tuner would draw them."""
    hypermodel = HomeostaticHyperModel(tiny_model, search_space=search_space)
    hp = keras_tuner.HyperParameters()
    for name, value in drawn.items():
        hp.Boolean(f"scaling/{name}")  # what a tuner draws
        hp.values[f"scaling/{name}"] = value
    model = hypermodel.build(hp)
    (callback,) = hypermodel.scaling_callbacks(hp, model)
    return callback, hp


def test_a_space_naming_center_inputs_gives_the_callback_its_value():
    callback, _ = _callback_drawing(
        {"center_inputs": [False, True]}, center_inputs=True
    )
    assert callback.center_inputs is True
    states = [layer.homeostasis for layer, _ in callback.bindings]
    assert states and all(state.centering is not None for state in states)


def test_a_space_naming_hold_norms_gives_the_callback_its_value():
    callback, _ = _callback_drawing({"hold_norms": [False, True]}, hold_norms=True)
    assert callback.hold_norms is True
    states = [layer.homeostasis for layer, _ in callback.bindings]
    assert states and not any(state.scales_kernel for state in states)


@pytest.mark.parametrize("held", [True, False])
def test_a_space_naming_norm_relaxation_relaxes_the_callbacks_held_norms(held):
    space = {"hold_norms": [False, True], "norm_relaxation": [1e-4, 1e-3]}
    callback, hp = _callback_drawing(space, hold_norms=held)
    assert callback.hold_norms is held
    if held:
        assert hp.values["scaling/norm_relaxation"] in (1e-4, 1e-3)
        assert callback.norm_relaxation == hp.values["scaling/norm_relaxation"]
        states = [layer.homeostasis for layer, _ in callback.bindings]
        assert states and all(
            s.held.relaxation == callback.norm_relaxation for s in states
        )
    else:
        # Inactive under `hold_norms=False`: neither drawn nor passed.
        assert "scaling/norm_relaxation" not in hp.values
        assert callback.norm_relaxation == 0.0


@pytest.mark.parametrize(
    "name, values",
    [("silence_evidence", (5.0, 10.0, 20.0)), ("max_offset", (1.0, 2.0, 3.0))],
)
def test_a_space_naming_an_off_by_default_setting_gives_the_callback_its_value(
    name, values
):
    hypermodel = HomeostaticHyperModel(tiny_model, search_space={name: list(values)})
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert hp.values[f"scaling/{name}"] in values
    hp.values[f"scaling/{name}"] = values[-1]
    (callback,) = hypermodel.scaling_callbacks(hp, model)
    assert callback.settings[name] == values[-1]
