"""UnitState: float32 state variables, accumulation and one update step."""

import math

import keras
import numpy as np
import pytest

from keras_homeostasis.settings import validate_settings
from keras_homeostasis.unit_state import UnitState

VECTORS = ["activity", "firing_rate", "log_gain", "factor", "shift"]


@pytest.fixture
def mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy("float32")


def settings(**overrides):
    base = dict(momentum=0.0, warmup=0, rate=0.5, max_step=0.1, target=1.0)
    return validate_settings(**{**base, **overrides})


def values(state):
    return {v.name: np.array(v.numpy()) for v in state.variables}


def test_state_variables_are_float32_non_trainable_and_named():
    state = UnitState(3)
    by_name = {v.name: v for v in state.variables}
    for name in VECTORS:
        assert by_name[name].shape == (3,)
        assert by_name[name].dtype == "float32"
    assert by_name["accumulator"].shape == (7,)
    assert by_name["steps"].dtype == "int64"
    assert by_name["collecting"].numpy() == 1.0
    assert not state.trainable_weights
    assert np.all(by_name["factor"].numpy() == 1.0)
    assert np.all(by_name["log_gain"].numpy() == 0.0)


def test_state_stays_float32_under_mixed_precision(mixed_precision):
    state = UnitState(2)
    assert all(v.dtype in ("float32", "int64") for v in state.variables)
    state.accumulate(np.full((4, 2), 3.0, "float16"))
    assert state.accumulator.dtype == "float32"
    np.testing.assert_allclose(state.accumulator.numpy(), [12, 12, 4, 4, 4])


@pytest.mark.parametrize("units", [0, -1, 2.5, True, "3"])
def test_invalid_units_are_named(units):
    with pytest.raises(ValueError, match=f"units={units!r}"):
        UnitState(units)


def test_accumulate_adds_batches_until_the_update():
    state = UnitState(2)
    state.accumulate(np.array([[1.0, -1.0], [2.0, 0.0]], "float32"))
    state.accumulate(np.array([[3.0, 4.0]], "float32"))
    np.testing.assert_allclose(state.accumulator.numpy(), [6, 5, 3, 1, 3])
    state.update(state.accumulator.value, settings(warmup=5))
    assert np.all(state.accumulator.numpy() == 0.0)
    assert int(state.steps.numpy()) == 1
    np.testing.assert_allclose(state.activity.numpy(), [2.0, 5 / 3], rtol=1e-6)


def test_accumulate_reads_the_unit_axis_of_channels_first_outputs():
    y = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype("float32")
    first, last = UnitState(3), UnitState(3)
    first.accumulate(y, unit_axis=1)
    last.accumulate(np.moveaxis(y, 1, -1), unit_axis=-1)
    np.testing.assert_allclose(
        first.accumulator.numpy(), last.accumulator.numpy(), rtol=1e-6
    )
    assert first.accumulator.numpy()[-1] == 2 * 4 * 4


def test_accumulate_is_a_no_op_while_not_collecting():
    state = UnitState(2)
    state.collecting.assign(0.0)
    state.accumulate(np.ones((4, 2), "float32"))
    assert np.all(state.accumulator.numpy() == 0.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_batch_is_dropped(bad):
    state = UnitState(2)
    state.accumulate(np.ones((4, 2), "float32"))
    before = state.accumulator.numpy().copy()
    y = np.ones((4, 2), "float32")
    y[1, 0] = bad
    state.accumulate(y)
    np.testing.assert_array_equal(state.accumulator.numpy(), before)


def test_update_moves_units_toward_a_fixed_target_and_writes_every_vector():
    state = UnitState(2)
    state.accumulate(np.array([[0.5, 2.0]] * 4, "float32"))
    state.update(state.accumulator.value, settings(target=1.0))
    factor = state.factor.numpy()
    assert factor[0] > 1.0 > factor[1]
    np.testing.assert_allclose(state.log_gain.numpy(), np.log(factor), atol=1e-6)
    np.testing.assert_allclose(
        state.activity.numpy(), [0.5, 2.0] * factor, rtol=1e-6
    )  # the trace is compensated for the factor just applied
    np.testing.assert_allclose(state.firing_rate.numpy(), [1.0, 1.0])


def test_update_with_unusable_statistics_changes_nothing_but_the_factor():
    state = UnitState(2)
    state.accumulate(np.array([[0.5, 2.0]] * 4, "float32"))
    state.update(state.accumulator.value, settings(target=1.0))
    before = values(state)
    nan = np.array([math.nan, 1.0, 1.0, 1.0, 1.0], "float32")
    for packed in (np.zeros(5, "float32"), nan):
        state.update(packed, settings(target=1.0))
        after = values(state)
        for name in ("activity", "firing_rate", "log_gain", "steps"):
            np.testing.assert_array_equal(after[name], before[name])
        assert np.all(after["factor"] == 1.0) and np.all(after["shift"] == 0.0)
        assert np.all(np.isfinite(after["accumulator"]))


def test_silent_unit_factor_is_exactly_one_with_a_positive_shift():
    state = UnitState(3)
    y = np.array([[0.0, 1.0, -3.0], [0.0, 2.0, -1.0]], "float32")  # unit 0 dead,
    state.accumulate(y)  # unit 2 negative only: |y| > 0 but never fires
    state.update(state.accumulator.value, settings(target=5.0, revive=0.1))
    factor, shift = state.factor.numpy(), state.shift.numpy()
    assert factor[0] == 1.0 and factor[2] == 1.0 and factor[1] > 1.0
    assert shift[0] > 0.0 and shift[2] > 0.0 and shift[1] == 0.0
    assert shift[0] <= 0.1 * np.mean([0.0, 1.5, 2.0]) * (1 + 1e-6)


@pytest.mark.parametrize(
    "shape", [(3, 4), (2, 3, 4), (2, 2, 3, 4), (2, 2, 2, 3, 4)], ids=str
)
def test_scale_kernel_multiplies_each_units_incoming_weights(shape):
    state = UnitState(4)
    state.factor.assign(np.array([0.5, 1.0, 2.0, 1.5], "float32"))
    kernel = np.random.default_rng(0).normal(size=shape).astype("float32")
    scaled = keras.ops.convert_to_numpy(state.scale_kernel(kernel))
    np.testing.assert_allclose(scaled, kernel * [0.5, 1.0, 2.0, 1.5], rtol=1e-6)


def test_config_round_trip():
    state = UnitState(5, name="h_homeostasis")
    revived = UnitState.from_config(state.get_config())
    assert revived.get_config() == state.get_config()
    assert revived.units == 5
