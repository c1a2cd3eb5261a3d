"""`UsageEntropyCallback`: the entropy objective written into the fit logs."""

import copy

import keras
import numpy as np
import pytest
from tuning_testing import tiny_model

from keras_homeostasis import metrics
from keras_homeostasis.layers import HomeostaticConv2D
from keras_homeostasis.tuning import UsageEntropyCallback


def test_logs_entropy_and_score_of_the_final_model(digits):
    (x, y), (x_val, y_val) = digits
    model = tiny_model()
    callback = UsageEntropyCallback((x_val, y_val), entropy_weight=0.5)
    history = model.fit(
        x,
        y,
        epochs=2,
        batch_size=32,
        validation_data=(x_val, y_val),
        callbacks=[callback],
        verbose=0,
    )
    entropy = history.history["val_usage_entropy"]
    score = history.history["val_homeostasis_score"]
    assert len(entropy) == len(score) == 2
    # The last epoch's entry is the entropy of the trained model's hidden layers.
    report = metrics.UsageReport.from_model(model, x_val)
    expected = np.mean([m["usage_entropy"] for m in report.layers.values()])
    assert entropy[-1] == pytest.approx(expected, rel=1e-5)
    accuracy = history.history["val_accuracy"][-1]
    assert score[-1] == pytest.approx(accuracy + 0.5 * expected, rel=1e-6)
    assert 0.0 < entropy[-1] <= 1.0


def test_measurement_does_not_count_in_homeostatic_statistics(digits):
    (x, _), _ = digits
    layer = HomeostaticConv2D(4, 3, activation="relu", name="conv")
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), layer, keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    state = layer.homeostasis
    state.collecting.assign(1.0)
    before = keras.ops.convert_to_numpy(state.accumulator).copy()
    callback = UsageEntropyCallback(x[:32], layers=["conv"])
    callback.set_model(model)
    assert 0.0 < callback.measure() <= 1.0
    # Conv layers get no `training` flag: `collecting` alone keeps them out.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(state.accumulator), before)
    assert float(keras.ops.convert_to_numpy(state.collecting)) == 1.0


def test_survives_deepcopy_and_config_round_trip(digits):
    _, (x_val, _) = digits
    callback = UsageEntropyCallback(x_val, layers=["hidden_1"], entropy_weight=0.2)
    copied = copy.deepcopy(callback)
    assert copied is not callback
    np.testing.assert_array_equal(copied.validation_data, callback.validation_data)
    assert copied.get_config()["entropy_weight"] == 0.2
    restored = UsageEntropyCallback(**callback.get_config())
    assert restored.layers == ["hidden_1"]
    assert restored.validation_data.shape == x_val.shape


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"entropy_weight": -1.0}, "entropy_weight"),
        ({"entropy_weight": "high"}, "entropy_weight"),
        ({"max_samples": 0}, "max_samples"),
        ({"validation_data": ()}, "validation_data"),
        ({"validation_data": None}, "validation_data"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    kwargs = {"validation_data": np.zeros((4, 8)), **kwargs}
    with pytest.raises((TypeError, ValueError), match=f"`{name}`"):
        UsageEntropyCallback(**kwargs)
