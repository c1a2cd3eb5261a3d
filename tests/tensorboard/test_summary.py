"""The summary API: what `unit_usage` stores and how TensorBoard reads it back."""

import numpy as np
import pytest
import tensorflow as tf
from tensorboard import context
from tensorboard.backend.event_processing import data_provider
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.compat.proto import summary_pb2

from keras_homeostasis import metrics
from keras_homeostasis.tensorboard import metadata
from keras_homeostasis.tensorboard import summary


def read_back(logdir):
    """`{run: {tag: (TensorTimeSeries, [TensorDatum])}}` via the data provider."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0}
    )
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    ctx = context.RequestContext()
    listing = provider.list_tensors(
        ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME
    )
    data = provider.read_tensors(
        ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME, downsample=1000
    )
    return {
        run: {tag: (listing[run][tag], data[run][tag]) for tag in listing[run]}
        for run in listing
    }


def test_round_trip_through_the_data_provider(tmp_path):
    activity = np.array([0.0, 1.0, 2.0, 5.0], "float32")
    factor = np.array([1.0, 0.5, 2.0, 1.5], "float32")
    writer = tf.summary.create_file_writer(str(tmp_path / "run"))
    with writer.as_default():
        with tf.name_scope("model"):
            assert summary.unit_usage("dense", activity, factor=factor, step=7)
        assert summary.unit_usage("plain", activity, step=8, description="probe")
    writer.close()

    runs = read_back(tmp_path)
    assert set(runs) == {"run"}
    assert set(runs["run"]) == {"model/dense", "plain"}
    series, data = runs["run"]["model/dense"]
    assert metadata.parse_content(series.plugin_content) == {
        "units": 4,
        "scaled": True,
        "factor": "scale",
    }
    assert [d.step for d in data] == [7]
    split = metadata.unpack(data[0].numpy[None, :], 4)
    np.testing.assert_allclose(split["activity"][0], activity)
    np.testing.assert_allclose(split["factor"][0], factor)
    # No target: the layer's mean activity.
    np.testing.assert_allclose(split["target"][0], np.full(4, 2.0))
    assert split["entropy"][0] == pytest.approx(metrics.usage_entropy(activity))
    assert split["cv"][0] == pytest.approx(
        metrics.coefficient_of_variation(activity), rel=1e-5
    )
    assert split["dead_fraction"][0] == pytest.approx(0.25)

    plain, plain_data = runs["run"]["plain"]
    assert metadata.parse_content(plain.plugin_content)["scaled"] is False
    assert plain.description == "probe"
    np.testing.assert_allclose(
        metadata.unpack(plain_data[0].numpy[None, :], 4)["factor"][0], 1.0
    )


def test_metadata_declares_the_tensor_data_class():
    meta = summary.summary_metadata(3, scaled=False)
    assert meta.data_class == summary_pb2.DATA_CLASS_TENSOR
    assert meta.plugin_data.plugin_name == "homeostasis"


@pytest.mark.parametrize(
    "target, expected", [(0.5, [0.5] * 3), ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])]
)
def test_scalar_and_vector_targets(tmp_path, target, expected):
    writer = tf.summary.create_file_writer(str(tmp_path / "run"))
    with writer.as_default():
        summary.unit_usage("d", [1.0, 2.0, 3.0], target=target, step=1)
    writer.close()
    _, data = read_back(tmp_path)["run"]["d"]
    packed = data[0].numpy[None, :]
    np.testing.assert_allclose(metadata.unpack(packed, 3)["target"][0], expected)


def test_explicit_dead_units(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path / "run"))
    with writer.as_default():
        summary.unit_usage("d", [1.0, 2.0, 3.0, 4.0], dead=[1, 1, 1, 0], step=1)
    writer.close()
    _, data = read_back(tmp_path)["run"]["d"]
    assert metadata.unpack(data[0].numpy[None, :], 4)["dead_fraction"][0] == 0.75


def test_without_a_default_writer_nothing_is_written():
    assert not summary.unit_usage("d", [1.0, 2.0], step=1)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"activity": [[1.0, 2.0]]}, "activity"),
        ({"activity": []}, "activity"),
        ({"activity": [1.0, 2.0], "factor": [1.0]}, "factor"),
        ({"activity": [1.0, 2.0], "target": [1.0, 2.0, 3.0]}, "target"),
        ({"activity": [1.0, 2.0], "dead": [True]}, "dead"),
        ({"activity": [1.0, 2.0], "firing_rate": [0.5]}, "firing_rate"),
        ({"activity": [1.0, 2.0], "spread": [[1.0, 2.0]]}, "spread"),
    ],
)
def test_bad_shapes_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        summary.unit_usage("d", step=1, **kwargs)


def test_parse_content_rejects_foreign_metadata():
    for raw in [b"", b"not json", b'{"version": 99, "units": 3}', b'{"version": 1}']:
        with pytest.raises(ValueError):
            metadata.parse_content(raw)
    # Both layouts this plugin reads.
    for version in metadata.READABLE_VERSIONS:
        raw = f'{{"version": {version}, "units": 3, "scaled": true}}'.encode()
        # Runs written before the factor's kind was stored: scale factors.
        expected = {"units": 3, "scaled": True, "factor": "scale"}
        assert metadata.parse_content(raw) == expected
    raw = b'{"version": 2, "units": 3, "scaled": true, "factor": "norm"}'
    assert metadata.parse_content(raw)["factor"] == "norm"
    # A kind this version does not know reads as a scale factor.
    raw = b'{"version": 2, "units": 3, "scaled": true, "factor": "other"}'
    assert metadata.parse_content(raw)["factor"] == "scale"


def test_a_bad_factor_kind_is_named():
    with pytest.raises(ValueError, match="factor_kind='gain'"):
        summary.unit_usage(
            "d", [1.0, 2.0], factor=[1.0, 1.0], factor_kind="gain", step=1
        )


def test_firing_rate_and_spread_round_trip(tmp_path):
    rate = np.array([0.0, 0.25, 0.5, 1.0], "float32")
    spread = np.array([0.1, 1.0, np.nan, 3.0], "float32")
    writer = tf.summary.create_file_writer(str(tmp_path / "run"))
    with writer.as_default():
        summary.unit_usage(
            "d", [1.0, 2.0, 3.0, 4.0], firing_rate=rate, spread=spread, step=1
        )
        summary.unit_usage("plain", [1.0, 2.0], step=1)
    writer.close()
    runs = read_back(tmp_path)["run"]
    value = runs["d"][1][0].numpy
    assert metadata.layout_of(value) == (metadata.VERSION, 4)
    split = metadata.unpack(value[None, :], 4)
    np.testing.assert_array_equal(split["firing_rate"][0], rate)
    np.testing.assert_array_equal(split["spread"][0], spread)
    # Not given: not measured.
    plain = metadata.unpack(runs["plain"][1][0].numpy[None, :], 2)
    assert np.isnan(plain["firing_rate"]).all() and np.isnan(plain["spread"]).all()


def test_both_layouts_say_which_they_are():
    statistics = [0.9, 0.1, 0.5]
    current = metadata.pack([1, 2], [1, 1], [2, 2], statistics, [0.5, 1.0], [1, 2])
    assert current.shape == (metadata.packed_length(2),) == (14,)
    first = np.array([1, 2, 1, 1, 2, 2, *statistics], "float32")
    assert metadata.layout_of(first) == (1, 2) and metadata.units_of(first) == 2
    upgraded = metadata.upgrade(first)
    assert metadata.layout_of(upgraded) == (metadata.VERSION, 2)
    np.testing.assert_array_equal(upgraded[:6], first[:6])
    assert np.isnan(upgraded[6:10]).all()
    np.testing.assert_array_equal(upgraded[10:13], first[6:])
    # A vector ending in neither a dead fraction nor the version marker.
    for foreign in ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [np.nan] * 6, [0.0] * 5):
        assert metadata.layout_of(np.array(foreign, "float32")) is None
