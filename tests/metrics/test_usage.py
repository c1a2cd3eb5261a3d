"""Load-balancing metrics: known values, per-layer statistics, UsageReport."""

import importlib.util
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_homeostasis import metrics
from keras_homeostasis.layers import HomeostaticDense

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.mark.parametrize(
    "activity, expected",
    [
        ([2.0, 2.0, 2.0, 2.0], 1.0),
        ([0.0, 5.0, 0.0, 0.0], 0.0),
        ([1.0, 3.0], -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) / math.log(2)),
        ([7.0], 1.0),
    ],
    ids=["equal", "one_hot", "one_to_three", "single_unit"],
)
def test_usage_entropy(activity, expected):
    assert metrics.usage_entropy(np.array(activity)) == pytest.approx(expected, 1e-6)


@pytest.mark.parametrize(
    "activity, expected",
    [([3.0, 3.0, 3.0], 0.0), ([0.0, 2.0], 1.0), ([1, 2, 3, 4], math.sqrt(1.25) / 2.5)],
)
def test_coefficient_of_variation(activity, expected):
    value = metrics.coefficient_of_variation(np.array(activity, "float32"))
    assert value == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "activity, expected",
    [([3.0, 3.0, 3.0], 0.0), ([0, 0, 0, 5.0], 0.75), ([4.0, 1.0, 3.0, 2.0], 0.25)],
    ids=["equal", "one_hot", "one_to_four"],
)
def test_gini(activity, expected):
    assert metrics.gini(np.array(activity)) == pytest.approx(expected, abs=1e-6)


def test_dead_fraction_and_sorted_activity():
    assert metrics.dead_fraction(np.array([0, 3, 0, 1])) == 0.5
    assert metrics.dead_fraction(np.array([1, 1])) == 0.0
    np.testing.assert_array_equal(
        metrics.sorted_activity(np.array([0.2, 0.9, 0.0, 0.5])), [0.9, 0.5, 0.2, 0.0]
    )


def digits_mlp():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data[:200] / 16.0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(12, activation="relu", name="h1"),
            HomeostaticDense(6, activation="relu", name="h2"),
            keras.layers.Dense(10, name="output"),
        ]
    )
    # Unit 0 of h1 never fires: a dead unit the report must count.
    bias = model.get_layer("h1").bias
    bias.assign(np.r_[-100.0, np.zeros(11)].astype("float32"))
    return model, x, d.target[:200]


def expected_statistics(model, x, name):
    y = keras.Model(model.inputs[0], model.get_layer(name).output)(x)
    y = keras.ops.convert_to_numpy(y)
    return np.abs(y).mean(axis=0), (y > 0).sum(axis=0)


def test_layer_statistics_match_a_direct_forward_pass():
    model, x, y = digits_mlp()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    for data in (x, (x, y), dataset):
        stats = metrics.layer_statistics(model, data, batch_size=48)
        assert list(stats) == ["h1", "h2"]  # hidden layers, not the output
        for name, (activity, positive) in stats.items():
            want_activity, want_positive = expected_statistics(model, x, name)
            np.testing.assert_allclose(activity, want_activity, rtol=1e-5)
            np.testing.assert_array_equal(positive, want_positive)
    stats = metrics.layer_statistics(model, x, layers=["h2"], batch_size=50, steps=2)
    activity, _ = expected_statistics(model, x[:100], "h2")
    np.testing.assert_allclose(stats["h2"][0], activity, rtol=1e-5)


def test_unit_statistics_add_firing_rate_and_pre_activation_spread():
    keras.utils.set_random_seed(1)
    x = np.random.default_rng(1).normal(size=(100, 6, 6, 2)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(5, 3, name="conv"),  # Linear, then ReLU().
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            keras.layers.Dense(7, activation="relu", name="dense"),
            keras.layers.Dense(3, name="output"),
        ]
    )
    stats = metrics.unit_statistics(model, x, batch_size=32)
    assert list(stats) == ["conv", "dense"]
    z = keras.Model(model.inputs[0], model.get_layer("conv").output)(x)
    z = keras.ops.convert_to_numpy(z).reshape(-1, 5).astype("float64")
    conv = stats["conv"]
    np.testing.assert_allclose(conv["activity"], np.maximum(z, 0).mean(0), rtol=1e-5)
    np.testing.assert_allclose(conv["firing_rate"], (z > 0).mean(0))
    np.testing.assert_allclose(conv["spread"], z.std(0), rtol=1e-4)
    y = keras.Model(model.inputs[0], model.get_layer("dense").output)(x)
    y = keras.ops.convert_to_numpy(y)
    np.testing.assert_allclose(stats["dense"]["firing_rate"], (y > 0).mean(0))
    # The built-in ReLU hides the pre-activation: no spread.
    assert np.isnan(stats["dense"]["spread"]).all()


def test_layer_statistics_leave_homeostatic_state_alone():
    model, x, _ = digits_mlp()
    state = model.get_layer("h2").homeostasis
    before = [v.numpy().copy() for v in state.variables]
    metrics.layer_statistics(model, x)
    for old, variable in zip(before, state.variables):
        np.testing.assert_array_equal(variable.numpy(), old)


def test_usage_report(tmp_path):
    model, x, _ = digits_mlp()
    report = metrics.UsageReport.from_model(model, x)
    assert list(report.layers) == ["h1", "h2"]
    h1 = report.layers["h1"]
    activity, _ = expected_statistics(model, x, "h1")
    assert h1["units"] == 12
    assert h1["dead_fraction"] == pytest.approx(1 / 12)
    assert h1["usage_entropy"] == pytest.approx(metrics.usage_entropy(activity), 1e-5)
    assert h1["cv"] == pytest.approx(metrics.coefficient_of_variation(activity), 1e-5)
    assert h1["gini"] == pytest.approx(metrics.gini(activity), abs=1e-5)
    assert report.sorted_activity("h1")[-1] == 0.0
    lines = report.to_markdown().splitlines()
    assert lines[0].startswith("| layer | units | usage entropy")
    assert len(lines) == 4 and lines[2].startswith("| h1 | 12 |")
    path = tmp_path / "usage.json"
    report.save(path)
    saved = json.loads(path.read_text())
    assert saved == json.loads(json.dumps(report.to_dict()))
    assert len(saved["activity"]["h2"]) == 6


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed")
def test_usage_report_plot_writes_a_png(tmp_path):
    model, x, _ = digits_mlp()
    path = tmp_path / "usage.png"
    metrics.UsageReport.from_model(model, x).plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(HAS_MATPLOTLIB, reason="matplotlib is installed")
def test_usage_report_plot_names_the_missing_package(tmp_path):
    model, x, _ = digits_mlp()
    with pytest.raises(ImportError, match="pip install matplotlib"):
        metrics.UsageReport.from_model(model, x).plot(tmp_path / "usage.png")


class ReportDuringFit(keras.callbacks.Callback):
    def __init__(self, x):
        super().__init__()
        self.x = x

    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            metrics.UsageReport.from_model(self.model, self.x)


def test_a_report_during_fit_does_not_change_the_scaling():
    from homeostasis_testing import assert_bit_equal
    from homeostasis_testing import compiled
    from homeostasis_testing import model_of
    from homeostasis_testing import noise
    from homeostasis_testing import snapshot

    from keras_homeostasis import SynapticScalingCallback

    x, y = noise((6, 6, 1), n=64)
    results = []
    for extra in ([], [ReportDuringFit(x[:16])]):
        model = compiled(model_of("Conv2D"))
        callbacks = [SynapticScalingCallback(warmup=0), *extra]
        model.fit(x, y, batch_size=16, shuffle=False, verbose=0, callbacks=callbacks)
        results.append(snapshot(model))
    assert_bit_equal(results[0], results[1])


@pytest.mark.parametrize(
    "activity, match",
    [
        (np.ones((2, 3)), "vector"),
        (np.array([]), "at least one unit"),
        (np.array([-1.0, 1.0]), "non-negative"),
    ],
    ids=["two_d", "empty", "negative"],
)
@pytest.mark.parametrize(
    "metric", ["usage_entropy", "coefficient_of_variation", "gini"], ids=str
)
def test_metrics_refuse_bad_activity_by_name(metric, activity, match):
    with pytest.raises(ValueError, match=match):
        getattr(metrics, metric)(activity)


@pytest.mark.parametrize(
    "metric", ["usage_entropy", "coefficient_of_variation", "gini"], ids=str
)
def test_non_finite_activity_has_no_balance_value(metric):
    assert math.isnan(getattr(metrics, metric)(np.array([math.nan, 1.0])))


def test_all_silent_layer_has_no_balance_value_and_is_all_dead():
    zeros = np.zeros(4)
    assert math.isnan(metrics.usage_entropy(zeros))
    assert math.isnan(metrics.coefficient_of_variation(zeros))
    assert math.isnan(metrics.gini(zeros))
    assert metrics.dead_fraction(zeros) == 1.0


def test_usage_report_on_empty_data_is_a_clear_error():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, activation="relu")]
        + [keras.layers.Dense(2)]
    )
    with pytest.raises(ValueError, match=r"`data`.*shape \(0, 3\)"):
        metrics.UsageReport.from_model(model, np.zeros((0, 3), "float32"))
