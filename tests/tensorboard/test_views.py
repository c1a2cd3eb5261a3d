"""Server-side downsampling: bounded sizes, correct order, exact values."""

import json

import numpy as np
import pytest

from keras_homeostasis.tensorboard import views


@pytest.mark.parametrize("count, limit", [(5, 10), (1000, 7), (10_000, 500), (3, 1)])
def test_pick_is_bounded_and_keeps_the_ends(count, limit):
    picked = views.pick(count, limit)
    assert len(picked) <= limit
    assert len(picked) == min(count, limit)
    assert picked[-1] == count - 1 or limit == 1
    assert picked[0] == 0
    assert np.all(np.diff(picked) > 0)


@pytest.mark.filterwarnings("ignore:All-NaN slice")
def test_row_quantiles_match_numpy():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(40, 33))
    values[3, :5] = np.nan
    values[4, :] = np.nan
    values[5, 2] = np.inf
    expected = np.nanquantile(
        np.where(np.isfinite(values), values, np.nan), views.QUANTILES, axis=1
    )
    got = views.row_quantiles(values, views.QUANTILES)
    np.testing.assert_allclose(got, expected, equal_nan=True)


def test_heatmap_sorts_units_and_encodes_relative_activity():
    steps = np.array([0, 10, 20])
    # Rows are steps, columns units; unit 2 is the most used, unit 0 silent.
    activity = np.array([[0.0, 1.0, 3.0], [0.0, 1.0, 3.0], [0.0, 3.0, 1.0]])
    data = views.heatmap(steps, activity, max_steps=10, max_rows=10)
    assert data["steps"] == [0, 10, 20]
    assert data["rows"] == 3
    top, middle, bottom = data["values"]
    # Layer mean 4/3 at every step: log2(3 / (4/3)) = 1.17 -> 12 tenths.
    assert top == [12, 12, -4]
    assert middle == [-4, -4, 12]
    assert bottom == [None, None, None]
    assert data["layer_mean"] == pytest.approx([4 / 3, 4 / 3, 4 / 3], rel=1e-3)


def test_heatmap_groups_units_beyond_the_row_limit():
    rng = np.random.default_rng(1)
    activity = rng.gamma(1.0, 1.0, (50, 1000))
    data = views.heatmap(np.arange(50), activity, max_steps=20, max_rows=64)
    assert data["rows"] == 64
    assert len(data["values"]) == 64
    assert all(len(row) == 20 for row in data["values"])
    # Rows are rank groups, most used first (up to the rounding to tenths).
    ratios = [np.mean(2.0 ** (np.array(row) / 10)) for row in data["values"]]
    assert ratios[0] > 2 * ratios[-1]
    assert np.all(np.diff(ratios) < 0.05)


def test_sorted_curve_uses_the_nearest_step():
    steps = np.array([0, 100, 200])
    activity = np.array([[1.0, 2.0, 3.0], [5.0, 4.0, 6.0], [0.0, 0.0, 1.0]])
    target = np.full((3, 3), 2.0)
    data = views.sorted_curve(steps, activity, target, step=130, max_points=10)
    assert data["step"] == 100
    assert data["activity"] == [6.0, 5.0, 4.0]
    assert data["target"] == [2.0, 2.0, 2.0]
    assert (data["first_step"], data["last_step"]) == (0, 200)
    assert views.sorted_curve(steps, activity, target, None, 10)["step"] == 200


def test_sorted_curve_is_bounded():
    activity = np.linspace(1.0, 2.0, 4096)[None, :]
    data = views.sorted_curve(np.array([5]), activity, activity, None, 100)
    assert len(data["activity"]) == len(data["ranks"]) == 100
    assert data["ranks"][0] == 0 and data["ranks"][-1] == 4095
    assert data["activity"][0] == 2.0


def test_factor_bands_and_statistics():
    steps = np.arange(0, 1000, 10)
    factor = np.tile(np.linspace(0.5, 2.0, 101), (100, 1))
    bands = views.factor_bands(steps, factor, max_steps=25)
    assert len(bands["steps"]) == 25
    assert bands["quantiles"] == list(views.QUANTILES)
    assert bands["bands"][0][0] == 0.5 and bands["bands"][-1][0] == 2.0
    assert bands["bands"][3][0] == pytest.approx(1.25)
    series = {"entropy": np.linspace(0, 1, 100), "cv": np.full(100, np.nan)}
    stats = views.statistics(steps, series, max_steps=10)
    assert len(stats["entropy"]) == 10 and stats["cv"] == [None] * 10


def test_quantile_bands_say_whether_anything_was_measured():
    steps = np.array([0, 10])
    rates = np.array([[0.0, 0.5, 1.0], [np.nan, 0.2, 0.4]])
    bands = views.quantile_bands(steps, rates, max_steps=10)
    assert bands["measured"] is True and bands["units"] == 3
    assert bands["bands"][0] == [0.0, 0.2] and bands["bands"][-1] == [1.0, 0.4]
    unmeasured = views.quantile_bands(steps, np.full((2, 3), np.nan), max_steps=10)
    assert unmeasured["measured"] is False
    assert unmeasured["bands"] == [[None, None]] * len(views.QUANTILES)


def test_worst_case_responses_stay_small():
    rng = np.random.default_rng(2)
    steps = np.arange(0, 20_000, 10)
    activity = rng.gamma(1.0, 1.0, (len(steps), 4096)).astype("float32")
    sizes = {
        "heatmap": views.heatmap(steps, activity, 500, 256),
        "sorted": views.sorted_curve(steps, activity, activity, None, 1024),
        "factors": views.factor_bands(steps, activity, views.MAX_SERIES_STEPS),
    }
    for name, body in sizes.items():
        assert len(json.dumps(body)) < 1_000_000, name
