"""The rule as pure functions: sensors, traces, set point, bounded factors."""

import math

import numpy as np
import pytest
from keras import ops

from keras_homeostasis import rule
from keras_homeostasis.settings import validate_settings


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def packed_from(activity, firing_rate, count=100.0):
    """The packed sensor vector of units with these mean |y| and firing rates."""
    a = np.asarray(activity, "float32")
    r = np.asarray(firing_rate, "float32")
    return ops.convert_to_tensor(
        np.concatenate([a * count, r * count, [count]]).astype("float32")
    )


def step(packed, activity=None, firing=None, log_gain=None, steps=0, **settings):
    n = (int(packed.shape[0]) - 1) // 2
    zeros = np.zeros(n, "float32")
    return {
        k: numpy(v)
        for k, v in rule.homeostatic_step(
            packed,
            ops.convert_to_tensor(zeros if activity is None else activity),
            ops.convert_to_tensor(zeros if firing is None else firing),
            ops.convert_to_tensor(zeros if log_gain is None else log_gain),
            ops.convert_to_tensor(np.int64(steps)),
            validate_settings(**settings),
        ).items()
    }


# Sensor packing.


def test_dense_sensor_sums_abs_values_positive_counts_and_rows():
    y = np.array([[1.0, -2.0, 0.0], [3.0, 0.5, -1.0]], "float32")
    packed = numpy(rule.unit_axis_reduction(y, -1))
    np.testing.assert_allclose(packed, [4.0, 2.5, 1.0, 2.0, 1.0, 0.0, 2.0])


@pytest.mark.parametrize("rank", [3, 4, 5], ids=["conv1d", "conv2d", "conv3d"])
def test_conv_sensor_pools_batch_and_space_per_channel(rank):
    rng = np.random.default_rng(rank)
    shape = (3,) + (4,) * (rank - 2) + (5,)
    y = rng.normal(size=shape).astype("float32")
    packed = numpy(rule.unit_axis_reduction(y, -1))
    spatial = tuple(range(rank - 1))
    expected = np.concatenate(
        [
            np.abs(y).sum(axis=spatial),
            (y > 0).sum(axis=spatial),
            [y.size // shape[-1]],
        ]
    )
    np.testing.assert_allclose(packed, expected, rtol=1e-5)


@pytest.mark.parametrize("rank", [3, 4, 5], ids=["conv1d", "conv2d", "conv3d"])
def test_channels_first_sensor_reads_axis_one(rank):
    rng = np.random.default_rng(rank)
    last = rng.normal(size=(2,) + (3,) * (rank - 2) + (4,)).astype("float32")
    first = np.moveaxis(last, -1, 1)
    np.testing.assert_allclose(
        numpy(rule.unit_axis_reduction(first, 1)),
        numpy(rule.unit_axis_reduction(last, -1)),
        rtol=1e-6,
    )


def test_float16_activations_near_max_are_summed_in_float32():
    y = np.full((64, 3), 6.5e4, "float16")  # each value near float16's max
    packed = numpy(rule.unit_axis_reduction(y, -1))
    assert packed.dtype == np.float32
    assert np.all(np.isfinite(packed))
    np.testing.assert_allclose(packed[:3], 64 * float(y[0, 0]), rtol=1e-6)


def test_split_statistics_divides_by_count():
    mean, rate, count = rule.split_statistics(packed_from([0.5, 2.0], [0.25, 1.0]))
    np.testing.assert_allclose(numpy(mean), [0.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(numpy(rate), [0.25, 1.0], rtol=1e-6)
    assert float(numpy(count)) == 100.0


@pytest.mark.parametrize(
    "packed, usable",
    [
        ([1.0, 1.0, 2.0], True),
        ([math.nan, 1.0, 2.0], False),
        ([math.inf, 1.0, 2.0], False),
        ([1.0, -math.inf, 2.0], False),
        ([0.0, 0.0, 0.0], False),
    ],
    ids=["finite", "nan", "inf", "-inf", "no-data"],
)
def test_is_usable(packed, usable):
    assert bool(numpy(rule.is_usable(np.array(packed, "float32")))) is usable


# Traces and set point.


def test_first_observation_initialises_the_trace_then_it_blends():
    trace, obs = np.array([5.0, 5.0], "float32"), np.array([1.0, 3.0], "float32")
    np.testing.assert_allclose(numpy(rule.update_trace(trace, obs, 0.9, False)), obs)
    np.testing.assert_allclose(
        numpy(rule.update_trace(trace, obs, 0.9, True)), [4.6, 4.8], rtol=1e-6
    )


def test_set_point_absolute_and_relative():
    a = np.array([1.0, 2.0, 6.0], "float32")
    np.testing.assert_allclose(numpy(rule.set_point(a, 0.5)), [0.5] * 3)
    np.testing.assert_allclose(numpy(rule.set_point(a, None)), [3.0] * 3)


# Factors.


def test_factors_move_each_unit_toward_its_set_point_by_rate():
    a = np.array([0.9, 1.0, 1.1], "float32")
    log_s = numpy(rule.log_factors(a, np.ones(3, "float32"), 1.0, 0.5, 1.0, 1e-3))
    np.testing.assert_allclose(log_s, 0.5 * -np.log(a), rtol=1e-5)
    assert log_s[0] > 0 and log_s[1] == 0 and log_s[2] < 0


def test_factors_are_bounded_by_max_step():
    rng = np.random.default_rng(0)
    a = np.exp(rng.normal(scale=4.0, size=1000)).astype("float32")
    log_s = numpy(rule.log_factors(a, np.ones_like(a), 1.0, 1.0, 0.05, 1e-3))
    assert np.max(np.abs(log_s)) <= 0.05 + 1e-7
    assert np.sum(np.abs(log_s) > 0.0499) > 100  # the bound was reached


def test_silent_and_dead_units_get_factor_exactly_one():
    a = np.array([0.0, 0.3, 0.3], "float32")
    rate = np.array([0.0, 0.0005, 0.5], "float32")
    log_s = numpy(rule.log_factors(a, rate, 1.0, 1.0, 0.5, 1e-3))
    assert log_s[0] == 0.0 and log_s[1] == 0.0 and log_s[2] > 0
    live = numpy(rule.is_live(a, rate, 1e-3))
    assert live.tolist() == [False, False, True]


def test_silent_units_get_a_positive_bias_shift_proportional_to_mean_activity():
    a = np.array([0.0, 1.0, 2.0], "float32")
    rate = np.array([0.0, 0.5, 0.5], "float32")
    shift = numpy(rule.revive_shift(a, rate, 1e-3, 0.1))
    np.testing.assert_allclose(shift, [0.1, 0.0, 0.0], rtol=1e-6)


def test_preserve_total_keeps_the_layer_total_activity():
    a = np.array([0.01, 0.5, 1.0, 2.0, 0.0], "float32")
    log_s = np.array([0.05, 0.05, 0.0, -0.05, 0.0], "float32")
    live = np.array([True, True, True, True, False])
    out = numpy(rule.preserve_total(log_s, a, live))
    np.testing.assert_allclose(np.sum(np.exp(out) * a), np.sum(a), rtol=1e-6)
    assert out[4] == 0.0  # a unit that is not live keeps factor 1
    np.testing.assert_allclose(np.diff(out[:4]), np.diff(log_s[:4]), atol=1e-6)


def test_cumulative_gain_is_clipped_and_the_applied_step_follows():
    log_gain = np.log(np.array([1.9, 0.55, 1.0], "float32"))
    log_s = np.array([0.2, -0.2, 0.05], "float32")
    new, applied = rule.bound_cumulative(log_gain, log_s, 0.5, 2.0)
    np.testing.assert_allclose(np.exp(numpy(new)), [2.0, 0.5, np.exp(0.05)], rtol=1e-6)
    np.testing.assert_allclose(numpy(applied), numpy(new) - log_gain, atol=1e-7)


# One whole step.


def test_first_step_initialises_traces_from_the_batch():
    out = step(packed_from([0.2, 0.4], [0.5, 1.0]), momentum=0.9, warmup=5)
    np.testing.assert_allclose(out["activity"], [0.2, 0.4], rtol=1e-6)
    np.testing.assert_allclose(out["firing_rate"], [0.5, 1.0], rtol=1e-6)
    assert out["steps"] == 1
    assert np.all(out["factor"] == 1.0) and np.all(out["log_gain"] == 0.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
def test_non_finite_statistics_leave_the_state_unchanged(bad):
    packed = numpy(packed_from([0.2, 0.4], [0.5, 1.0]))
    packed[1] = bad
    activity, firing = np.array([0.3, 0.3], "float32"), np.array([0.5, 0.5], "f4")
    log_gain = np.array([0.1, -0.1], "float32")
    out = step(ops.convert_to_tensor(packed), activity, firing, log_gain, steps=7)
    np.testing.assert_array_equal(out["activity"], activity)
    np.testing.assert_array_equal(out["firing_rate"], firing)
    np.testing.assert_array_equal(out["log_gain"], log_gain)
    assert out["steps"] == 7
    assert np.all(out["factor"] == 1.0) and np.all(out["shift"] == 0.0)


def test_warmup_and_period_decide_which_steps_scale():
    packed = packed_from([0.1, 1.0], [0.5, 0.5])
    scaled = []
    for steps in range(8):
        out = step(packed, [0.1, 1.0], [0.5, 0.5], steps=steps, warmup=3, period=2)
        scaled.append(bool(np.any(out["factor"] != 1.0)))
    # Step number k = steps + 1 scales when k > warmup and k % period == 0.
    assert scaled == [False, False, False, True, False, True, False, True]


def test_fixed_target_factor_is_bounded_by_max_step():
    rng = np.random.default_rng(1)
    a = np.exp(rng.normal(scale=3.0, size=50)).astype("float32")
    out = step(
        packed_from(a, np.full(50, 0.5)),
        a,
        np.full(50, 0.5, "f4"),
        steps=3,
        target=1.0,
        rate=1.0,
        max_step=0.05,
        warmup=0,
        min_gain=0.01,
        max_gain=100.0,
    )
    assert np.max(np.abs(np.log(out["factor"]))) <= 0.05 + 1e-6
    below = a < 1.0
    assert np.all(out["factor"][below] > 1.0) and np.all(out["factor"][~below] < 1.0)


def test_relative_target_preserves_the_layer_total_and_compensates_the_trace():
    a = np.array([0.2, 0.5, 1.0, 3.0], "float32")
    rate = np.full(4, 0.5, "float32")
    out = step(
        packed_from(a, rate),
        a,
        rate,
        steps=3,
        momentum=0.0,
        rate=0.5,
        max_step=0.2,
        warmup=0,
        min_gain=0.01,
        max_gain=100.0,
    )
    np.testing.assert_allclose(out["activity"], a * out["factor"], rtol=1e-6)
    np.testing.assert_allclose(np.sum(out["activity"]), np.sum(a), rtol=1e-5)
    assert out["factor"][0] > 1.0 > out["factor"][3]


def test_relative_target_factor_is_bounded_by_twice_max_step():
    # With a relative target the clipped factors are renormalised to keep the
    # layer's total activity: a common shift of at most max_step more
    # (docs/design.md, "total preserved").
    rng = np.random.default_rng(2)
    worst = 0.0
    for _ in range(20):
        a = np.exp(rng.normal(scale=3.0, size=16)).astype("float32")
        rate = np.full(16, 0.5, "float32")
        out = step(
            packed_from(a, rate),
            a,
            rate,
            steps=3,
            momentum=0.0,
            rate=1.0,
            max_step=0.05,
            warmup=0,
            min_gain=0.01,
            max_gain=100.0,
        )
        worst = max(worst, float(np.max(np.abs(np.log(out["factor"])))))
        np.testing.assert_allclose(np.sum(a * out["factor"]), np.sum(a), rtol=1e-4)
    assert worst <= 0.1 + 1e-6


def test_silent_unit_keeps_factor_one_and_gets_a_bounded_positive_shift():
    a = np.array([0.0, 0.5, 1.5], "float32")
    rate = np.array([0.0, 0.5, 0.5], "float32")
    out = step(
        packed_from(a, rate),
        a,
        rate,
        steps=3,
        momentum=0.0,
        warmup=0,
        revive=0.1,
        target=2.0,
    )
    assert out["factor"][0] == 1.0 and out["log_gain"][0] == 0.0
    assert 0.0 < out["shift"][0] <= 0.1 * np.mean(a) * (1 + 1e-6)
    assert np.all(out["shift"][1:] == 0.0)


def test_cumulative_gain_stays_within_min_and_max_gain():
    a = np.array([0.01, 100.0], "float32")
    rate = np.full(2, 0.5, "float32")
    log_gain = np.zeros(2, "float32")
    for k in range(60):
        out = step(
            packed_from(a, rate),
            a,
            rate,
            log_gain,
            steps=k + 1,
            target=1.0,
            rate=1.0,
            max_step=0.1,
            warmup=0,
            min_gain=0.8,
            max_gain=1.25,
        )
        log_gain = out["log_gain"]
        assert np.log(0.8) - 1e-6 <= log_gain.min()
        assert log_gain.max() <= np.log(1.25) + 1e-6
    np.testing.assert_allclose(np.exp(log_gain), [1.25, 0.8], rtol=1e-5)
    assert np.all(out["factor"] == 1.0)  # saturated: no further scaling
