"""`period > 1`: the rule senses, runs and rescales on every `period`-th
optimizer step only; the steps between are the optimizer's alone."""

import pathlib

import homeostasis_testing as ht
import keras
import numpy as np
import pytest

from keras_homeostasis import SynapticScalingCallback

# keras.backend.clear_session() collects garbage at every run.
pytestmark = pytest.mark.usefixtures("own_heap")

ROOT = pathlib.Path(__file__).resolve().parents[1]
PERIOD = 4
SETTINGS = dict(warmup=0, rate=0.2, period=PERIOD)
BATCH = 8


def trained(homeostatic, steps, model=None, jit_compile=False):
    """A Dense model (homeostatic: "callback", "layers" or None) after
    `steps` more optimizer steps of one `fit`."""
    if model is None:
        layers = homeostatic == "layers"
        settings = SETTINGS if layers else {}
        model = ht.model_of("Dense", homeostatic=layers, seed=1, **settings)
        ht.compiled(model, keras.optimizers.SGD(0.1), jit_compile=jit_compile)
        model.callbacks = (
            [SynapticScalingCallback(**SETTINGS, center_inputs=False, hold_norms=False)]
            if homeostatic == "callback"
            else []
        )
    x, y = ht.noise(ht.INPUT_SHAPES["Dense"], n=BATCH * steps, seed=steps)
    model.fit(
        x, y, batch_size=BATCH, shuffle=False, verbose=0, callbacks=model.callbacks
    )
    return model


def weights(model):
    return [np.array(v.numpy()) for v in model.trainable_variables]


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("homeostatic", ["callback", "layers"])
def test_steps_between_runs_are_plain_optimizer_steps(homeostatic, jit_compile):
    scaled = trained(homeostatic, PERIOD - 1, jit_compile=jit_compile)
    plain = trained(None, PERIOD - 1, jit_compile=jit_compile)
    for a, b in zip(weights(scaled), weights(plain)):
        np.testing.assert_array_equal(a, b)
    for _, state in ht.states(scaled):
        values = state.numpy_values()
        assert values["steps"] == PERIOD - 1
        assert not np.any(values["accumulator"]), "a step between runs was sensed"
        assert not np.any(values["log_gain"])

    # The next step is a run: sensed, stepped and rescaled.
    trained(homeostatic, 1, scaled)
    trained(None, 1, plain)
    for _, state in ht.states(scaled):
        values = state.numpy_values()
        assert values["steps"] == PERIOD
        assert np.any(values["log_gain"] != 0.0)
        assert not np.any(values["accumulator"])
    changed = [
        not np.array_equal(a, b) for a, b in zip(weights(scaled), weights(plain))
    ]
    assert any(changed)


def test_runs_fall_on_every_periodth_step_across_fits_and_executions():
    # Five fits of three steps each, two steps per compiled execution: the
    # rule still runs at optimizer steps 4, 8 and 12 (its own count is 3).
    model = ht.compiled(
        ht.model_of("Dense", seed=1), keras.optimizers.SGD(0.1), steps_per_execution=2
    )
    callback = SynapticScalingCallback(
        **SETTINGS, center_inputs=False, hold_norms=False
    )
    x, y = ht.noise(ht.INPUT_SHAPES["Dense"], n=BATCH * 3)
    gains = []
    for _ in range(5):
        model.fit(x, y, batch_size=BATCH, verbose=0, callbacks=[callback])
        gains.append(ht.states(model)[0][1].log_gain.numpy().copy())
    for _, state in ht.states(model):
        assert state.steps.numpy() == 15
    changed = [not np.array_equal(a, b) for a, b in zip(gains, gains[1:])]
    # Steps 1-3 | 4-6 | 7-9 | 10-12 | 13-15: runs at 4, 8 and 12.
    assert changed == [True, True, True, False]


def _apart_from(config, *paths):
    config = {section: dict(values) for section, values in config.items()}
    for section, key in paths:
        config[section].pop(key, None)
    return config


@pytest.mark.parametrize(
    "loader, name, methods",
    [
        ("continual", "continual_quick", ("continual", "methods")),
        ("continual", "continual_quick_long", ("continual", "methods")),
        ("compare", "compare_online_lr", ("compare", "methods")),
    ],
)
def test_period_configs_differ_from_theirs_only_in_period_and_methods(
    loader, name, methods
):
    # The README compares their scaling rows: nothing else may drift.
    from keras_homeostasis.lab import config as config_lib
    from keras_homeostasis.lab import continual

    load = continual.load_config if loader == "continual" else config_lib.load_config
    base = load(str(ROOT / "configs" / f"{name}.yaml"))
    period = load(str(ROOT / "configs" / f"{name}_period10.yaml"))
    assert period["scaling"]["period"] == 10
    assert period[methods[0]][methods[1]] == ["scaling"]
    skip = [methods, ("scaling", "period"), ("output", "run_dir")]
    assert _apart_from(period, *skip) == _apart_from(base, *skip)
