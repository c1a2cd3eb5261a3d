"""UnitState: float32 state variables, accumulation and one update step."""

import math
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_homeostasis.settings import validate_settings
from keras_homeostasis.unit_state import ROWS
from keras_homeostasis.unit_state import UnitState

VECTORS = [
    "activity",
    "firing_rate",
    "drive_mean",
    "drive_square",
    "log_gain",
    "factor",
    "shift",
]


@pytest.fixture
def mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy("float32")


def settings(**overrides):
    base = dict(momentum=0.0, warmup=0, rate=0.5, max_step=0.1, target_std=1.0)
    return validate_settings(**{**base, **overrides})


def values(state):
    return state.numpy_values()


def accumulate(state, z, bias=None, unit_axis=-1):
    z = np.asarray(z)
    state.accumulate(z, np.maximum(z, 0), bias, unit_axis)


def test_state_variables_are_float32_non_trainable_and_named():
    state = UnitState(3)
    by_name = {v.name: v for v in state.variables}
    # Few variables: each one a compiled step writes has a fixed cost.
    assert sorted(by_name) == ["accumulator", "collecting", "steps", "traces"]
    assert by_name["traces"].shape == (len(VECTORS), 3)
    for name in VECTORS:
        assert getattr(state, name).shape == (3,)
        assert getattr(state, name).dtype == "float32"
    assert by_name["traces"].dtype == "float32"
    assert by_name["accumulator"].shape == (4 * 3 + 2,)
    assert by_name["steps"].dtype == "int64"
    assert by_name["collecting"].numpy() == 1.0
    assert not state.trainable_weights
    assert np.all(state.factor.numpy() == 1.0)
    assert np.all(state.log_gain.numpy() == 0.0)


def test_state_stays_float32_under_mixed_precision(mixed_precision):
    state = UnitState(2)
    assert all(v.dtype in ("float32", "int64") for v in state.variables)
    accumulate(state, np.full((4, 2), 3.0, "float16"))
    assert state.accumulator.dtype == "float32"
    np.testing.assert_allclose(
        state.accumulator.numpy(), [12, 12, 4, 4, 12, 12, 36, 36, 4, 4]
    )


@pytest.mark.parametrize("units", [0, -1, 2.5, True, "3"])
def test_invalid_units_are_named(units):
    with pytest.raises(ValueError, match=f"units={units!r}"):
        UnitState(units)


def test_accumulate_adds_batches_until_the_update():
    state = UnitState(2)
    accumulate(state, np.array([[1.0, -1.0], [2.0, 0.0]], "float32"))
    accumulate(state, np.array([[3.0, 4.0]], "float32"))
    # Sums of each unit's |y|, firings, drives, squares; examples; values.
    np.testing.assert_allclose(
        state.accumulator.numpy(), [6, 4, 3, 1, 6, 3, 14, 17, 3, 3]
    )
    state.update(state.accumulator.value, np.zeros(2, "f4"), settings(warmup=5))
    assert np.all(state.accumulator.numpy() == 0.0)
    assert int(state.steps.numpy()) == 1
    np.testing.assert_allclose(state.activity.numpy(), [2.0, 4 / 3], rtol=1e-6)
    np.testing.assert_allclose(state.drive_mean.numpy(), [2.0, 1.0], rtol=1e-6)


def test_accumulate_subtracts_the_bias_from_the_drive():
    state = UnitState(2)
    accumulate(state, np.array([[1.0, 3.0]], "float32"), bias=np.array([1.0, 2.0]))
    np.testing.assert_allclose(state.accumulator.numpy()[4:6], [0.0, 1.0])


def test_accumulate_reads_the_unit_axis_of_channels_first_outputs():
    y = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype("float32")
    first, last = UnitState(3), UnitState(3)
    accumulate(first, y, unit_axis=1)
    accumulate(last, np.moveaxis(y, 1, -1), unit_axis=-1)
    np.testing.assert_allclose(
        first.accumulator.numpy(), last.accumulator.numpy(), rtol=1e-5
    )
    assert first.accumulator.numpy()[-1] == 2 * 4 * 4


def test_accumulate_is_a_no_op_while_not_collecting():
    state = UnitState(2)
    state.collecting.assign(0.0)
    accumulate(state, np.ones((4, 2), "float32"))
    assert np.all(state.accumulator.numpy() == 0.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_batch_is_dropped(bad):
    state = UnitState(2)
    accumulate(state, np.ones((4, 2), "float32"))
    before = state.accumulator.numpy().copy()
    y = np.ones((4, 2), "float32")
    y[1, 0] = bad
    accumulate(state, y)
    np.testing.assert_array_equal(state.accumulator.numpy(), before)


def test_update_moves_spreads_toward_the_target_and_writes_every_vector():
    state = UnitState(2)
    accumulate(state, np.array([[0.5, 2.0], [-0.5, -2.0]], "float32"))
    state.update(state.accumulator.value, np.zeros(2, "f4"), settings())
    factor = state.factor.numpy()
    assert factor[0] > 1.0 > factor[1]
    np.testing.assert_allclose(state.log_gain.numpy(), np.log(factor), atol=1e-6)
    np.testing.assert_allclose(
        state.drive_square.numpy(), [0.25, 4.0] * factor**2, rtol=1e-5
    )  # the trace is compensated for the factor just applied
    np.testing.assert_allclose(state.firing_rate.numpy(), [0.5, 0.5])


def test_update_with_unusable_statistics_changes_nothing_but_the_factor():
    state = UnitState(2)
    accumulate(state, np.array([[0.5, 2.0], [-0.5, -2.0]], "float32"))
    zeros = np.zeros(2, "f4")
    state.update(state.accumulator.value, zeros, settings())
    before = values(state)
    nan = np.ones(9, "float32")
    nan[0] = math.nan
    for packed in (np.zeros(9, "float32"), nan):
        state.update(packed, zeros, settings())
        after = values(state)
        for name in ("activity", "firing_rate", "drive_mean", "log_gain", "steps"):
            np.testing.assert_array_equal(after[name], before[name])
        assert np.all(after["factor"] == 1.0) and np.all(after["shift"] == 0.0)
        assert np.all(np.isfinite(after["accumulator"]))


def test_a_compiled_update_copies_no_state_variable_before_writing_it():
    # XLA copies a variable that several kernels read while the step writes
    # it in place. Each copy needs nothing, so it starts ready, and on a
    # CPU more than 8 ready kernels make XLA hand kernels to worker threads,
    # which costs an online step more than its kernels (docs/overhead.md).
    state = UnitState(8)
    rule_settings = settings(momentum=0.9)

    @tf.function(jit_compile=True)
    def step(z, bias):
        state.update(state.statistics(z, tf.nn.relu(z), bias, -1), bias, rule_settings)

    z = tf.constant(np.random.default_rng(0).normal(size=(4, 8)), tf.float32)
    bias = tf.zeros((8,))
    hlo = step.experimental_get_compiler_ir(z, bias)(stage="optimized_hlo")
    copies = [
        line.strip() for line in hlo.splitlines() if re.search(r"copy\(%arg", line)
    ]
    assert not copies
    step(z, bias)
    assert state.steps.numpy() == 1


def test_a_file_of_the_first_release_loads_with_its_gains_and_fresh_traces():
    state = UnitState(2)
    old = {
        "0": np.zeros(5, "f4"),
        "1": np.array([0.3, 0.4], "f4"),
        "2": np.array([0.5, 0.6], "f4"),
        "3": np.array([0.1, -0.1], "f4"),
        "4": np.ones(2, "f4"),
        "5": np.zeros(2, "f4"),
        "6": np.int64(40),
        "7": np.float32(1.0),
    }
    state.load_own_variables(old)
    np.testing.assert_allclose(state.log_gain.numpy(), [0.1, -0.1])
    np.testing.assert_allclose(state.activity.numpy(), [0.3, 0.4])
    assert int(state.steps.numpy()) == 0
    assert np.all(state.drive_square.numpy() == 0.0)


def test_a_file_with_one_variable_per_vector_loads_every_value():
    saved = {
        "accumulator": np.arange(9, dtype="f4"),
        "activity": np.array([0.3, 0.4], "f4"),
        "firing_rate": np.array([0.5, 0.6], "f4"),
        "log_gain": np.array([0.1, -0.1], "f4"),
        "factor": np.array([1.1, 0.9], "f4"),
        "shift": np.array([0.01, -0.02], "f4"),
        "steps": np.int64(40),
        "collecting": np.float32(0.0),
        "drive_mean": np.array([0.2, -0.3], "f4"),
        "drive_square": np.array([1.5, 2.5], "f4"),
    }
    state = UnitState(2)
    state.load_own_variables({str(i): saved[n] for i, n in enumerate(saved)})
    loaded = state.numpy_values()
    # Sums saved before they held the examples get that slot, at 0.
    saved["accumulator"] = np.array([0, 1, 2, 3, 4, 5, 6, 7, 0, 8], "f4")
    for name, value in saved.items():
        np.testing.assert_array_equal(loaded[name], value)


@pytest.mark.parametrize(
    "shape", [(3, 4), (2, 3, 4), (2, 2, 3, 4), (2, 2, 2, 3, 4)], ids=str
)
def test_scale_kernel_multiplies_each_units_incoming_weights(shape):
    state = UnitState(4)
    traces = state.traces.numpy()
    traces[ROWS.index("factor")] = [0.5, 1.0, 2.0, 1.5]
    state.traces.assign(traces)
    kernel = np.random.default_rng(0).normal(size=shape).astype("float32")
    scaled = keras.ops.convert_to_numpy(state.scale_kernel(kernel))
    np.testing.assert_allclose(scaled, kernel * [0.5, 1.0, 2.0, 1.5], rtol=1e-6)


def test_config_round_trip():
    state = UnitState(5, name="h_homeostasis")
    revived = UnitState.from_config(state.get_config())
    assert revived.get_config() == state.get_config()
    assert revived.units == 5
