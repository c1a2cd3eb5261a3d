"""The rule as pure functions: sensor, traces, scaling, intrinsic plasticity."""

import math

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_homeostasis import rule
from keras_homeostasis.settings import validate_settings


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def packed_from(drive, bias=None, outputs=None):
    """The packed sensor vector of one batch of drives `u` (rows) and bias `b`."""
    u = np.asarray(drive, "float32")
    b = np.zeros(u.shape[-1], "float32") if bias is None else np.asarray(bias, "f4")
    z = u + b
    y = np.maximum(z, 0.0) if outputs is None else outputs
    return rule.sensor_statistics(z, y, b, -1)


def fresh_state(units, **values):
    state = {name: np.zeros(units, "float32") for name in rule.TRACES}
    state["log_gain"] = np.zeros(units, "float32")
    state["steps"] = np.int64(0)
    state.update(values)
    return {k: ops.convert_to_tensor(v) for k, v in state.items()}


def step(packed, state=None, bias=None, **settings):
    units = (int(packed.shape[0]) - 2) // len(rule.STATISTICS)
    state = fresh_state(units) if state is None else state
    bias = np.zeros(units, "float32") if bias is None else np.asarray(bias, "f4")
    base = dict(warmup=0, momentum=0.0)
    new = rule.homeostatic_step(
        packed,
        state,
        ops.convert_to_tensor(bias),
        validate_settings(**{**base, **settings}),
    )
    return {k: numpy(v) for k, v in new.items()}


# Sensor.


def test_sensor_sums_outputs_firing_and_drive_moments_of_each_unit():
    z = np.array([[1.0, -2.0], [3.0, 0.5]], "float32")
    y = np.maximum(z, 0.0)
    bias = np.array([0.5, -0.5], "float32")
    packed = numpy(rule.sensor_statistics(z, y, bias, -1))
    u = z - bias
    expected = np.concatenate(
        [np.abs(y).sum(0), (z > 0).sum(0), u.sum(0), (u**2).sum(0), [2, 2]]
    )
    np.testing.assert_allclose(packed, expected, rtol=1e-6)


@pytest.mark.parametrize("rank", [3, 4, 5], ids=["conv1d", "conv2d", "conv3d"])
def test_conv_sensor_pools_batch_and_space_per_channel(rank):
    shape = (2,) + (3,) * (rank - 2) + (4,)
    z = np.random.default_rng(0).normal(size=shape).astype("float32")
    bias = np.arange(4, dtype="float32")
    packed = numpy(rule.sensor_statistics(z, z, bias, -1))
    flat = z.reshape(-1, 4)
    np.testing.assert_allclose(packed[8:12], (flat - bias).sum(0), rtol=1e-5)
    # Two examples, each of 3^(rank - 2) positions.
    assert packed[-2] == 2 and packed[-1] == flat.shape[0]


def test_channels_first_sensor_reads_axis_one():
    z = np.random.default_rng(1).normal(size=(2, 3, 4, 4)).astype("float32")
    bias = np.array([1.0, 2.0, 3.0], "float32")
    first = numpy(rule.sensor_statistics(z, z, bias, 1))
    last = numpy(rule.sensor_statistics(np.moveaxis(z, 1, -1), None or z, bias, -1))
    moved = np.moveaxis(z, 1, -1)
    last = numpy(rule.sensor_statistics(moved, moved, bias, -1))
    np.testing.assert_allclose(first, last, rtol=1e-5)


def test_float16_values_near_max_are_summed_in_float32():
    z = np.full((64, 2), 6.0e4, "float16")
    packed = numpy(rule.sensor_statistics(z, z, None, -1))
    assert np.all(np.isfinite(packed))
    np.testing.assert_allclose(packed[:2], 64 * 6.0e4, rtol=1e-3)


@pytest.mark.parametrize(
    "packed, usable",
    [
        ([1.0, 1.0, 1.0, 1.0, 2.0], True),
        ([1.0, 1.0, 1.0, 1.0, 0.0], False),
        ([math.nan, 1.0, 1.0, 1.0, 2.0], False),
        ([1.0, 1.0, math.inf, 1.0, 2.0], False),
    ],
)
def test_is_usable(packed, usable):
    assert bool(rule.is_usable(np.array(packed, "float32"))) is usable


# Traces.


def test_debiased_trace_of_one_observation_is_the_observation():
    trace = rule.update_trace(np.zeros(2, "f4"), np.array([2.0, 4.0], "f4"), 0.99)
    np.testing.assert_allclose(numpy(rule.debiased(trace, 0.99, 1)), [2, 4], 1e-5)


def test_batch_of_one_example_per_step_measures_the_spread_across_steps():
    # One example per step (online learning): the spread comes from the
    # traces of E[u] and E[u^2] over steps, not from a per-batch variance.
    rng = np.random.default_rng(0)
    state = fresh_state(1)
    for _ in range(400):
        u = rng.normal(1.0, 3.0, size=(1, 1))
        new = step(packed_from(u), state, momentum=0.99, warmup=10**6)
        state = {k: ops.convert_to_tensor(new[k]) for k in state}
    mean = numpy(rule.debiased(state["drive_mean"], 0.99, state["steps"]))
    square = numpy(rule.debiased(state["drive_square"], 0.99, state["steps"]))
    spread = numpy(rule.drive_spread(mean, square))
    assert 2.0 < spread[0] < 4.0 and 0.0 < mean[0] < 2.0


# Mechanism 1: synaptic scaling.


def test_scaling_moves_each_spread_toward_an_absolute_target_by_rate():
    u = np.array([[0.5, 4.0], [-0.5, -4.0]], "float32")  # spreads 0.5 and 4
    new = step(packed_from(u), target_std=1.0, anchor=1.0, rate=0.1, max_step=1.0)
    np.testing.assert_allclose(np.log(new["factor"]), 0.1 * np.log([2.0, 0.25]), 1e-5)


def test_relative_target_is_the_layers_geometric_mean_spread():
    u = np.array([[1.0, 3.0], [-1.0, -3.0]], "float32")  # spreads 1 and 3
    new = step(packed_from(u), target_std=None, rate=0.5, max_step=1.0)
    expected = 0.5 * np.log([math.sqrt(3.0), 1 / math.sqrt(3.0)])
    np.testing.assert_allclose(np.log(new["factor"]), expected, 1e-5)


def test_units_move_to_their_layer_and_the_layer_to_the_set_point_by_anchor():
    u = np.array([[0.5, 8.0], [-0.5, -8.0]], "float32")  # spreads 0.5 and 8
    new = step(packed_from(u), target_std=1.0, anchor=0.25, rate=0.1, max_step=1.0)
    log_factor = np.log(new["factor"])
    # Geometric mean 2: the units meet at it, it moves a quarter as fast to 1.
    np.testing.assert_allclose(log_factor[0] - log_factor[1], 0.1 * np.log(16.0), 1e-5)
    np.testing.assert_allclose(log_factor.mean(), 0.1 * 0.25 * np.log(0.5), 1e-5)


def test_a_layer_with_a_silent_input_is_not_grown_by_the_anchor():
    # All drives zero (the layer before went silent): no factor can give the
    # layer a spread, so its kernel is left alone rather than grown each step.
    u = np.zeros((4, 3), "float32")
    new = step(packed_from(u), target_std=1.0, anchor=1.0, rate=0.5, max_step=1.0)
    np.testing.assert_array_equal(new["factor"], [1.0, 1.0, 1.0])


def test_without_anchor_a_layers_scale_and_offset_never_drift():
    # The first v2 rule pulled units to the arithmetic mean spread; its
    # factors multiplied to more than one, and online the layer inflated.
    # Spreads 100x apart: at rate 0.01 no step reaches `max_step` (a clipped
    # step is the one exception to the factors' product of one).
    rng = np.random.default_rng(0)
    state, log_gain_sum, offset_shift = fresh_state(6), 0.0, 0.0
    for _ in range(50):
        u = rng.normal(size=(4, 6)) * rng.uniform(0.1, 10.0, size=6)
        new = step(packed_from(u.astype("f4")), state, anchor=0.0, rate=0.01)
        spread = np.sqrt(np.maximum(new["drive_square"] - new["drive_mean"] ** 2, 0))
        log_gain_sum += np.log(new["factor"]).sum()
        offset_shift += (new["shift"] / spread).sum()
        state = {k: ops.convert_to_tensor(new[k]) for k in state}
    assert abs(log_gain_sum) < 1e-4 and abs(offset_shift) < 1e-3


def test_scaling_step_is_bounded_by_max_step():
    u = np.array([[1e-3, 1e3], [-1e-3, -1e3]], "float32")
    new = step(packed_from(u), rate=1.0, max_step=0.05)
    np.testing.assert_allclose(np.log(new["factor"]), [0.05, -0.05], rtol=1e-5)


def test_cumulative_gain_stays_within_min_and_max_gain():
    u = np.array([[1e-3], [-1e-3]], "float32")
    state = fresh_state(1, log_gain=np.array([np.log(1.9)], "float32"))
    new = step(packed_from(u), state, rate=1.0, max_step=0.5, max_gain=2.0)
    np.testing.assert_allclose(np.exp(new["log_gain"]), [2.0], rtol=1e-5)
    np.testing.assert_allclose(new["factor"], [2.0 / 1.9], rtol=1e-5)


def test_drive_traces_are_compensated_for_the_factor_just_applied():
    u = np.array([[0.5, 4.0], [-0.5, -4.0]], "float32")
    new = step(packed_from(u), rate=0.5, max_step=1.0)
    factor = new["factor"]
    np.testing.assert_allclose(new["drive_square"], [0.25, 16.0] * factor**2, 1e-5)


# Mechanism 2: intrinsic plasticity.


def test_bias_moves_the_mean_preactivation_toward_zero_for_rate_one_half():
    u = np.array([[1.0, -3.0], [3.0, -1.0]], "float32")  # means 2 and -2, spread 1
    bias = np.array([0.5, 0.0], "float32")
    new = step(
        packed_from(u, bias),
        bias=bias,
        target_std=1.0,
        target_rate=0.5,
        anchor=1.0,
        bias_rate=0.25,
    )
    np.testing.assert_allclose(new["factor"], [1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(new["shift"], 0.25 * -np.array([2.5, -2.0]), 1e-5)


def test_target_rate_sets_the_mean_in_spreads_by_the_normal_quantile():
    assert rule.rate_quantile(0.5) == pytest.approx(0.0, abs=1e-12)
    assert rule.rate_quantile(0.8413447460685429) == pytest.approx(1.0, rel=1e-9)
    u = np.array([[-1.0], [1.0]], "float32")  # mean 0, spread 1
    new = step(
        packed_from(u), target_rate=0.8413447460685429, anchor=1.0, bias_rate=1.0
    )
    np.testing.assert_allclose(new["shift"], [1.0], rtol=1e-5)


def test_relative_rate_equalises_offsets_without_moving_their_mean():
    u = np.array([[0.0, -4.0], [2.0, -2.0]], "float32")  # means 1, -3; spread 1
    new = step(packed_from(u), target_rate=None, bias_rate=1.0)
    np.testing.assert_allclose(new["shift"], [-2.0, 2.0], rtol=1e-5)


def test_a_dead_unit_is_revived_by_its_bias_not_scaled_away():
    # Never fires (z < 0 always), yet its drive has a spread: its kernel is
    # scaled like any other and its bias rises toward its layer's offset.
    u = np.array([[-1.0, -1.0], [1.0, 1.0]], "float32")
    bias = np.array([-10.0, 0.0], "float32")
    new = step(packed_from(u, bias), bias=bias, bias_rate=0.1, anchor=0.0)
    assert new["firing_rate"][0] == 0.0
    np.testing.assert_allclose(new["shift"], [0.5, -0.5], rtol=1e-5)


def background_unit_and_a_gaussian_one(examples):
    """Drives of two units over `examples` rows: the first at 0 on 15 of
    every 16 (the background) and -3 on the rest, the second standard
    normal; the first's bias of -0.1 silences it on every example."""
    rng = np.random.default_rng(0)
    peaked = np.where(np.arange(examples) % 16 == 15, -3.0, 0.0)
    u = np.stack([peaked, rng.normal(size=examples)], axis=1).astype("float32")
    return u, np.array([-0.1, 0.0], "float32")


def test_silence_bound_is_the_normal_quantile_of_the_evidence_share():
    assert float(rule.silence_bound(128.0, 10.0)) == pytest.approx(
        rule.rate_quantile(10 / 128), rel=1e-5
    )
    # Above the median where the evidence is more than half the examples.
    assert float(rule.silence_bound(16.0, 10.0)) == pytest.approx(
        rule.rate_quantile(10 / 16), rel=1e-5
    )
    assert float(rule.silence_bound(10.0, 10.0)) == math.inf
    assert float(rule.silence_bound(1.0, 10.0)) == math.inf


def test_a_unit_silent_where_its_offset_says_it_fires_is_taken_at_the_bound():
    u, bias = background_unit_and_a_gaussian_one(128)
    packed = packed_from(u, bias)
    plain = step(packed, bias=bias, anchor=0.0)
    refuted = step(packed, bias=bias, anchor=0.0, silence_evidence=10.0)
    # After this step's rescale by `factor`, as intrinsic plasticity sees it.
    factor = refuted["factor"]
    spread = factor * np.sqrt(np.mean(u**2, 0) - np.mean(u, 0) ** 2)
    offsets = (factor * u.mean(0) + bias) / spread
    # The silent unit's offset, -0.4, says it fires on a third of the values.
    assert offsets[0] > rule.rate_quantile(10 / 128)
    offsets[0] = rule.rate_quantile(10 / 128)
    expected = 0.03 * spread * (offsets.mean() - offsets)
    np.testing.assert_allclose(refuted["shift"], expected, rtol=1e-4)
    assert refuted["shift"][0] > plain["shift"][0] > 0.0
    np.testing.assert_array_equal(refuted["factor"], plain["factor"])


@pytest.mark.parametrize("examples", [1, 10])
def test_silence_refutes_nothing_in_fewer_examples_than_the_evidence(examples):
    u, bias = background_unit_and_a_gaussian_one(16)
    packed = numpy(packed_from(u, bias))
    packed[-2] = examples  # the same values, counted as fewer examples
    plain = step(packed, bias=bias)
    refuted = step(packed, bias=bias, silence_evidence=10.0)
    for name in plain:
        np.testing.assert_array_equal(refuted[name], plain[name])


def test_a_firing_unit_is_not_refuted_however_low_its_offset():
    u, bias = background_unit_and_a_gaussian_one(128)
    bias = np.array([3.5, 0.0], "float32")  # the first now fires on the background
    packed = packed_from(u, bias)
    plain = step(packed, bias=bias)
    refuted = step(packed, bias=bias, silence_evidence=10.0)
    np.testing.assert_array_equal(refuted["shift"], plain["shift"])


def offsets_after(new, u, bias):
    """Each unit's offset after the step: its rescaled drive mean plus its
    moved bias, in rescaled spreads."""
    factor = new["factor"]
    spread = factor * np.sqrt(np.mean(u**2, 0) - np.mean(u, 0) ** 2)
    return (factor * u.mean(0) + bias + new["shift"]) / spread


def test_max_offset_moves_a_unit_past_the_bound_back_to_it_in_one_step():
    u = np.random.default_rng(2).normal(size=(256, 3)).astype("float32")
    # Offsets about -6, 0 and +4 spreads: the first silent, the last
    # firing on nearly every input.
    bias = np.array([-6.0, 0.0, 4.0], "float32")
    packed = packed_from(u, bias)
    bounded = offsets_after(step(packed, bias=bias, max_offset=1.0), u, bias)
    np.testing.assert_allclose(bounded[[0, 2]], [-1.0, 1.0], atol=1e-4)
    # Within the bound the unit moves as without it.
    plain = offsets_after(step(packed, bias=bias), u, bias)
    np.testing.assert_allclose(bounded[1], plain[1], atol=1e-5)
    assert plain[0] < -5.0 and plain[2] > 3.0


def test_a_max_offset_no_unit_reaches_changes_nothing():
    u = np.random.default_rng(3).normal(size=(64, 4)).astype("float32")
    bias = np.array([-0.5, 0.0, 0.3, 0.1], "float32")
    packed = packed_from(u, bias)
    plain = step(packed, bias=bias)
    wide = step(packed, bias=bias, max_offset=50.0)
    for name in plain:
        np.testing.assert_allclose(wide[name], plain[name], rtol=1e-5, atol=1e-7)


# The whole step.


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
def test_non_finite_statistics_leave_the_state_unchanged(bad):
    packed = numpy(packed_from(np.array([[1.0, 2.0], [3.0, 1.0]], "float32")))
    packed[1] = bad
    state = fresh_state(2, steps=np.int64(5))
    new = step(ops.convert_to_tensor(packed), state)
    for name in rule.TRACES + ("log_gain",):
        np.testing.assert_array_equal(new[name], numpy(state[name]))
    assert new["steps"] == 5
    assert np.all(new["factor"] == 1.0) and np.all(new["shift"] == 0.0)


@pytest.mark.parametrize("period", [1, 2])
def test_warmup_counts_the_runs_of_the_rule(period):
    # A run at batch size 1 sees one example: the warm-up counts observed
    # steps, so the rule acts from its third run at any period.
    u = np.array([[0.5, 4.0], [-0.5, -4.0]], "float32")
    acted = []
    for steps in range(5):
        state = fresh_state(2, steps=np.int64(steps))
        new = step(packed_from(u), state, warmup=2, period=period)
        acted.append(bool(np.any(new["factor"] != 1.0)))
    assert acted == [False, False, True, True, True]


def test_a_run_every_period_steps_corrects_what_those_steps_would_have():
    # Rates and the step bound are per optimizer step: a run at period 4
    # acts as one step at the compounded rates would.
    u = np.array([[0.5, 4.0, -1.0], [-0.5, -4.0, 3.0]], "float32")
    bias = np.array([0.1, -0.2, 0.3], "float32")
    every_4 = step(packed_from(u, bias), bias=bias, period=4, rate=0.03, bias_rate=0.05)
    compounded = step(
        packed_from(u, bias),
        bias=bias,
        momentum=0.0,
        rate=1 - 0.97**4,
        bias_rate=1 - 0.95**4,
        max_step=0.2,
    )
    for name in ("factor", "shift", "log_gain"):
        np.testing.assert_allclose(every_4[name], compounded[name], rtol=1e-6)


def test_traces_span_the_same_optimizer_steps_whatever_the_period():
    # Run every 4 steps, a trace decays by momentum^4 per run.
    u = np.array([[0.5, 4.0], [-0.5, -4.0]], "float32")
    state = fresh_state(2, activity=np.ones(2, "float32"), steps=np.int64(3))
    new = step(packed_from(u), state, momentum=0.9, period=4, rate=1e-6)
    observed = np.abs(np.maximum(u, 0.0)).mean(0)
    expected = 0.9**4 * 1.0 + (1 - 0.9**4) * observed
    np.testing.assert_allclose(new["activity"], expected, rtol=1e-6)


@pytest.mark.parametrize("anchor", [1.0, 0.1])
def test_many_steps_settle_every_unit_at_the_set_points(anchor):
    # A fixed population of drives: the controller converges, no overshoot,
    # whether the layer moves to the set points as fast as its units or not.
    settings = validate_settings(
        warmup=0,
        momentum=0.9,
        rate=0.2,
        bias_rate=0.2,
        max_step=0.2,
        min_gain=1e-3,
        max_gain=1e3,
        anchor=anchor,
        target_std=1.0,
        target_rate=0.5,
    )

    # Compiled, as the callback runs it: thousands of eager steps took a
    # minute of the suite.
    @tf.function
    def step_on(u, bias, state):
        z = u + bias
        packed = rule.sensor_statistics(z, tf.nn.relu(z), bias, -1)
        return rule.homeostatic_step(packed, state, bias, settings)

    rng = np.random.default_rng(0)
    base = rng.normal(size=(256, 4)) * [0.1, 1.0, 5.0, 20.0] + [1.0, -2.0, 0.0, 9.0]
    gain, bias, state = np.ones(4), np.zeros(4, "float32"), fresh_state(4)
    for _ in range(300 if anchor == 1.0 else 3000):
        u = (base * gain).astype("float32")
        new = step_on(u, bias, state)
        gain = gain * new["factor"].numpy()
        bias = bias + new["shift"].numpy()
        state = {k: new[k] for k in state}
    z = base * gain + bias
    np.testing.assert_allclose(z.std(0), 1.0, rtol=0.02)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=0.03)


# Several layers in one call (the engine's path): each layer's result is
# its own, to the last bit, whatever the others hold (a NaN batch included).


@pytest.mark.parametrize(
    "set_points",
    [{}, {"anchor": 1.0, "target_rate": 0.5}, {"target_std": None}],
    ids=["defaults", "fixed", "layer-spread"],
)
def test_layers_stepped_together_match_one_call_per_layer(set_points):
    rng = np.random.default_rng(0)
    settings = validate_settings(warmup=2, momentum=0.9, **set_points)
    packed = [packed_from(rng.normal(size=(8, n)) * (1 + n)) for n in (3, 5, 2)]
    nan = np.array(packed[2])
    nan[0] = math.nan  # this layer's batch is unusable: its state stays
    packed[2] = ops.convert_to_tensor(nan)
    # Layers at different steps (one added later, one past its warm-up).
    states = [
        fresh_state(3, steps=np.int64(5), log_gain=np.full(3, 0.2, "f4")),
        fresh_state(5),
        fresh_state(2, steps=np.int64(1)),
    ]
    biases = [ops.convert_to_tensor(rng.normal(size=n).astype("f4")) for n in (3, 5, 2)]
    together = rule.homeostatic_steps(packed, states, biases, settings)
    for new, args in zip(together, zip(packed, states, biases)):
        alone = rule.homeostatic_step(*args, settings)
        assert sorted(new) == sorted(alone)
        for name in alone:
            np.testing.assert_array_equal(
                numpy(new[name]), numpy(alone[name]), err_msg=name
            )
    assert [int(numpy(new["steps"])) for new in together] == [6, 1, 1]
    assert np.all(numpy(together[2]["factor"]) == 1.0)


# One pass's sums as the sensor keeps them (`checked`): finite, or zeros.


def sensor_kept(packed):
    """`packed` as `UnitState.statistics` keeps it: zeros where unusable."""
    return ops.where(rule.is_usable(packed), packed, ops.zeros_like(packed))


@pytest.mark.parametrize(
    "bad", [None, math.nan, math.inf], ids=["finite", "nan", "inf"]
)
def test_a_checked_pass_steps_bit_for_bit_as_a_tested_one(bad):
    rng = np.random.default_rng(1)
    drive = rng.normal(size=(6, 4)).astype("f4") * [0.5, 1.0, 2.0, 4.0]
    if bad is not None:
        drive[3, 2] = bad
    packed = sensor_kept(packed_from(drive))
    settings = validate_settings(warmup=1, momentum=0.9)
    state = fresh_state(4, steps=np.int64(3), log_gain=np.full(4, 0.1, "f4"))
    bias = ops.convert_to_tensor(rng.normal(size=4).astype("f4"))
    tested = rule.homeostatic_step(packed, state, bias, settings)
    checked = rule.homeostatic_step(packed, state, bias, settings, checked=True)
    for name in tested:
        np.testing.assert_array_equal(
            numpy(checked[name]), numpy(tested[name]), err_msg=name
        )
    assert int(numpy(checked["steps"])) == (3 if bad is not None else 4)


def test_a_sum_of_finite_passes_that_overflows_is_dropped():
    # Two finite passes whose squares' sum overflows: the default test,
    # which a sum of several passes gets, drops the step (`checked` is for
    # one pass's sums only, which the sensor tested).
    packed = packed_from(np.full((1, 3), 1.5e19, "f4"))
    assert np.all(np.isfinite(numpy(packed)))
    total = packed + packed
    assert not np.all(np.isfinite(numpy(total)))
    assert int(step(total)["steps"]) == 0


def test_several_layers_take_their_own_checked_flags():
    rng = np.random.default_rng(2)
    settings = validate_settings(warmup=0, momentum=0.9)
    packed = [sensor_kept(packed_from(rng.normal(size=(4, n)))) for n in (3, 2)]
    states = [fresh_state(3), fresh_state(2)]
    biases = [ops.zeros(3), ops.zeros(2)]
    tested = rule.homeostatic_steps(packed, states, biases, settings)
    checked = rule.homeostatic_steps(packed, states, biases, settings, (True, False))
    for new, old in zip(checked, tested):
        for name in old:
            np.testing.assert_array_equal(numpy(new[name]), numpy(old[name]))


def test_a_checked_step_compiles_without_the_finiteness_reduction():
    # With XLA on a CPU the whole test is three kernels per layer and step.
    settings = validate_settings(warmup=0, momentum=0.9)
    state = fresh_state(8)

    def optimized_hlo(checked):
        @tf.function(jit_compile=True)
        def compiled(packed, bias):
            return rule.homeostatic_step(packed, state, bias, settings, checked)

        packed = packed_from(np.ones((4, 8), "f4"))
        return compiled.experimental_get_compiler_ir(packed, tf.zeros(8))(
            stage="optimized_hlo"
        )

    assert "is-finite" in optimized_hlo(False)
    assert "is-finite" not in optimized_hlo(True)


@pytest.mark.parametrize("shape", [(5, 4), (3, 3, 2, 4)], ids=["dense", "conv"])
def test_direction_gradient_is_a_scale_invariant_layers_vector_gradient(shape):
    # A kernel `w = g v / |v|`: the gradient the optimizer of a layer
    # computing with it hands `v`, from the one `w` gets.
    rng = np.random.default_rng(0)
    axes = tuple(range(len(shape) - 1))
    vector = tf.Variable(rng.normal(size=shape), dtype="float32")
    gain = tf.constant(rng.uniform(0.5, 2.0, size=shape[-1]), "float32")
    target = tf.constant(rng.normal(size=shape), "float32")
    with tf.GradientTape(persistent=True) as tape:
        length = tf.sqrt(tf.reduce_sum(tf.square(vector), axis=axes))
        kernel = gain * vector / length
        loss = tf.reduce_sum(tf.sin(kernel * target))
    expected = tape.gradient(loss, vector).numpy()
    kernel_gradient = tape.gradient(loss, kernel)
    found = rule.direction_gradient(kernel, kernel_gradient, length)
    np.testing.assert_allclose(np.asarray(found), expected, rtol=1e-4, atol=1e-6)


def test_a_step_on_the_vector_is_taken_from_the_kernel_it_moved():
    rng = np.random.default_rng(1)
    vector = rng.normal(size=(6, 3)).astype("float32")
    length = np.linalg.norm(vector, axis=0)
    gain = np.array([0.5, 1.0, 3.0], "float32")
    previous = gain * vector / length
    step = rng.normal(size=(6, 3)).astype("float32") * 0.1
    moved, new_length = rule.scale_invariant_step(
        previous + step, previous, length, gain
    )
    np.testing.assert_allclose(np.asarray(moved), vector + step, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(new_length), np.linalg.norm(vector + step, axis=0), rtol=1e-5
    )


def test_held_directions_have_the_norms_of_their_gains():
    rng = np.random.default_rng(2)
    vector = rng.normal(size=(7, 3, 4)).astype("float32")
    length = np.linalg.norm(vector, axis=(0, 1))
    log_gain = np.log(np.array([0.3, 1.0, 2.0, 5.0], "float32"))
    held = np.asarray(rule.held_directions(vector, length, log_gain))
    np.testing.assert_allclose(
        np.linalg.norm(held, axis=(0, 1)), np.exp(log_gain), rtol=1e-6
    )
    # Directions unchanged: each unit's column is a positive multiple.
    np.testing.assert_allclose(held / np.exp(log_gain), vector / length, rtol=1e-5)
