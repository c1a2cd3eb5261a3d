"""`HomeostasisLogger` and `SynapticScalingCallback(log_dir=...)` on real MNIST."""

import copy
import inspect
import json
import types
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis import metrics
from keras_homeostasis import rule
from keras_homeostasis.layers import HomeostaticDense
from keras_homeostasis.tensorboard import HomeostasisLogger
from keras_homeostasis.tensorboard import homeostasis_logger
from keras_homeostasis.tensorboard import metadata


def logged(run_dir):
    """`({tag: {step: packed vector}}, {tag: metadata dict})` of a run."""
    values, contents = {}, {}
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME:
                    raw = value.metadata.plugin_data.content
                    contents[value.tag] = metadata.parse_content(raw)
                steps = values.setdefault(value.tag, {})
                assert event.step not in steps, f"step {event.step} logged twice"
                steps[event.step] = tf.make_ndarray(value.tensor)
    return values, contents


def unpacked(values, contents, tag, step):
    units = contents[tag]["units"]
    split = metadata.unpack(values[tag][step][None, :], units)
    return {name: array[0] for name, array in split.items()}


def corrected(state, momentum):
    """The state's bias-corrected activity, firing rate and drive spread."""

    def debiased(trace):
        return rule.debiased(trace, momentum, state.steps)

    spread = rule.drive_spread(debiased(state.drive_mean), debiased(state.drive_square))
    return {
        "activity": keras.ops.convert_to_numpy(debiased(state.activity)),
        "firing_rate": keras.ops.convert_to_numpy(debiased(state.firing_rate)),
        "spread": keras.ops.convert_to_numpy(spread),
    }


def test_scaling_callback_logs_its_layers(tmp_path, mnist_slice, make_mlp):
    x, y = mnist_slice
    model = make_mlp()
    callback = SynapticScalingCallback(
        log_dir=tmp_path / "scaling", log_freq=5, center_inputs=False, hold_norms=False
    )
    model.fit(
        x[:512], y[:512], batch_size=32, epochs=2, verbose=0, callbacks=[callback]
    )

    values, contents = logged(tmp_path / "scaling")
    assert set(values) == {"hidden_0", "hidden_1"}
    assert contents["hidden_0"] == {"units": 32, "scaled": True, "factor": "scale"}
    # Every 5 optimizer steps and at both epoch ends (16 steps per epoch);
    # nothing at step 0, before the traces hold a measurement.
    assert sorted(values["hidden_0"]) == [5, 10, 15, 16, 20, 25, 30, 32]
    for layer, state in callback.bindings:
        last = unpacked(values, contents, layer.name, 32)
        traces = corrected(state, callback.settings["momentum"])
        activity = traces["activity"]
        np.testing.assert_allclose(last["activity"], activity, rtol=1e-6)
        # The two statistics the rule controls.
        np.testing.assert_allclose(last["firing_rate"], traces["firing_rate"])
        assert np.all((last["firing_rate"] >= 0) & (last["firing_rate"] <= 1))
        np.testing.assert_allclose(last["spread"], traces["spread"], rtol=1e-6)
        assert np.all(last["spread"] > 0)
        gain = np.exp(keras.ops.convert_to_numpy(state.log_gain))
        np.testing.assert_allclose(last["factor"], gain, rtol=1e-6)
        np.testing.assert_allclose(last["target"], np.mean(activity), rtol=1e-5)
        assert last["entropy"] == pytest.approx(metrics.usage_entropy(activity))


def test_probe_measures_a_batchnorm_model(tmp_path, mnist_slice, make_mlp):
    x, y = mnist_slice
    model = make_mlp(batchnorm=True)
    logger = HomeostasisLogger(tmp_path / "bn", update_freq=8, probe_data=(x[:128], y))
    model.fit(x[:512], y[:512], batch_size=32, epochs=2, verbose=0, callbacks=[logger])

    values, contents = logged(tmp_path / "bn")
    assert set(values) == {"hidden_0", "hidden_1"}
    assert contents["hidden_1"] == {"units": 16, "scaled": False, "factor": "scale"}
    assert sorted(values["hidden_0"]) == [0, 8, 16, 24, 32]
    expected = metrics.layer_statistics(model, x[:128], layers=["hidden_0", "hidden_1"])
    for name, (activity, positive) in expected.items():
        last = unpacked(values, contents, name, 32)
        np.testing.assert_allclose(last["activity"], activity, rtol=1e-5)
        np.testing.assert_allclose(last["factor"], 1.0)
        assert last["dead_fraction"] == pytest.approx(np.mean(positive <= 0))
        np.testing.assert_allclose(last["firing_rate"], positive / 128, rtol=1e-6)
        # Dense(activation="relu"): the probe cannot see the pre-activation.
        assert np.isnan(last["spread"]).all()
    first = unpacked(values, contents, "hidden_0", 0)
    assert not np.allclose(first["activity"], values["hidden_0"][32][:32])


def test_named_layers_epoch_frequency_and_resume(tmp_path, mnist_slice, make_mlp):
    x, y = mnist_slice
    model = make_mlp(batchnorm=True)
    logger = HomeostasisLogger(
        str(tmp_path / "bn"), update_freq="epoch", probe_data=x[:64], layers=["bn_0"]
    )
    model.fit(x[:256], y[:256], batch_size=32, epochs=2, verbose=0, callbacks=[logger])
    model.fit(x[:256], y[:256], batch_size=32, epochs=1, verbose=0, callbacks=[logger])
    values, _ = logged(tmp_path / "bn")
    assert set(values) == {"bn_0"}
    # Train begin, two epoch ends, then the resumed fit's epoch end only.
    assert sorted(values["bn_0"]) == [0, 8, 16, 24]


def test_homeostatic_layers_use_their_own_momentum(tmp_path, mnist_slice):
    x, y = mnist_slice
    model = keras.Sequential(
        [
            keras.Input((784,)),
            HomeostaticDense(8, activation="relu", momentum=0.5, name="h"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    logger = HomeostasisLogger(tmp_path / "run", update_freq=4)
    model.fit(x[:128], y[:128], batch_size=32, epochs=1, verbose=0, callbacks=[logger])
    values, contents = logged(tmp_path / "run")
    assert sorted(values["h"]) == [4]
    state = model.layers[0].homeostasis
    traces = corrected(state, 0.5)
    last = unpacked(values, contents, "h", 4)
    for name in ("activity", "firing_rate", "spread"):
        np.testing.assert_allclose(last[name], traces[name], rtol=1e-6)


def _fit_logged_layers(run_dir, x, y, **options):
    """A model of a homeostatic layer `h` with `options` and a default one,
    `plain`, fitted for 4 steps under a `HomeostasisLogger` to `run_dir`."""
    model = keras.Sequential(
        [
            keras.Input((784,)),
            HomeostaticDense(8, activation="relu", name="h", **options),
            HomeostaticDense(6, activation="relu", name="plain"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    logger = HomeostasisLogger(run_dir, update_freq=4)
    model.fit(x[:128], y[:128], batch_size=32, epochs=1, verbose=0, callbacks=[logger])
    return model


def test_centered_layers_log_the_input_mean_they_subtract(tmp_path, mnist_slice):
    model = _fit_logged_layers(tmp_path / "run", *mnist_slice, center_inputs=True)
    values, contents = logged(tmp_path / "run")
    assert sorted(contents) == ["h", "plain"]
    assert "plain/input_mean" not in values
    assert sorted(values["h/input_mean"]) == [4]
    buckets = values["h/input_mean"][4]  # [left edge, right edge, count] rows
    mean = keras.ops.convert_to_numpy(model.layers[0].input_mean.mean())
    assert buckets[:, 2].sum() == 784
    assert np.isclose(buckets[0, 0], mean.min())
    assert np.isclose(buckets[-1, 1], mean.max())
    # The mean of four MNIST batches: not the zeros it starts at.
    assert mean.max() > 0.1


def test_the_centered_callback_logs_its_input_mean(tmp_path, mnist_slice):
    x, y = mnist_slice
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(8, activation="relu", name="h"),
            keras.layers.Dense(10, activation="softmax", name="out"),
        ]
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    callback = SynapticScalingCallback(
        center_inputs=True, log_dir=str(tmp_path / "run"), log_freq=4, hold_norms=False
    )
    model.fit(
        x[:128], y[:128], batch_size=32, epochs=1, verbose=0, callbacks=[callback]
    )
    values, _ = logged(tmp_path / "run")
    buckets = values["h/input_mean"][4]
    mean = model.layers[0].homeostasis.centering.input_mean.mean().numpy()
    assert buckets[:, 2].sum() == 784
    assert np.isclose(buckets[-1, 1], mean.max()) and mean.max() > 0.1


def _histogram_values(buckets):
    """The (left, right) range and count of a histogram's buckets."""
    return buckets[0, 0], buckets[-1, 1], buckets[:, 2].sum()


def test_held_norms_log_kernel_norms_and_their_step_scale(tmp_path, mnist_slice):
    x, y = mnist_slice
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(8, activation="relu", name="h"),
            keras.layers.Dense(6, activation="relu", name="scaled"),
            keras.layers.Dense(10, activation="softmax", name="out"),
        ]
    )
    model.compile(
        keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy"
    )
    run = tmp_path / "run"
    held = SynapticScalingCallback(
        layers=["h"], hold_norms=True, log_dir=str(run), log_freq=4, center_inputs=False
    )
    plain = SynapticScalingCallback(
        layers=["scaled"], center_inputs=False, hold_norms=False
    )
    model.fit(
        x[:128], y[:128], batch_size=32, epochs=1, verbose=0, callbacks=[held, plain]
    )
    values, contents = logged(run)
    assert contents["h"]["factor"] == "norm"
    state = model.get_layer("h").homeostasis
    norms = np.linalg.norm(model.get_layer("h").kernel.numpy(), axis=0)
    # The factor is the kernel norm the rule holds.
    np.testing.assert_allclose(
        unpacked(values, contents, "h", 4)["factor"], norms, rtol=1e-5
    )
    scale = np.exp(state.log_gain.numpy()) / state.held.length.numpy()
    low, high, count = _histogram_values(values["h/step_scale"][4])
    assert count == 8 and np.isclose(low, scale.min()) and np.isclose(high, scale.max())
    # Momentum SGD's steps across the vectors lengthened them: steps shrank.
    assert scale.max() < 1.0
    assert "scaled/step_scale" not in values


def test_scale_invariant_layers_log_their_step_scale(tmp_path, mnist_slice):
    model = _fit_logged_layers(tmp_path / "run", *mnist_slice, scale_invariant=True)
    values, contents = logged(tmp_path / "run")
    assert contents["h"]["factor"] == "norm" and contents["plain"]["factor"] == "scale"
    layer = model.layers[0]
    scale = np.exp(layer.homeostasis.log_gain.numpy()) / np.linalg.norm(
        layer.kernel.numpy(), axis=0
    )
    low, high, count = _histogram_values(values["h/step_scale"][4])
    assert count == 8 and np.isclose(low, scale.min(), rtol=1e-4)
    assert np.isclose(high, scale.max(), rtol=1e-4)
    assert "plain/step_scale" not in values


def test_tensorboard_serves_the_input_mean_histogram(
    tmp_path, mnist_slice, tensorboard_server
):
    x, y = mnist_slice
    model = keras.Sequential(
        [
            keras.Input((784,)),
            HomeostaticDense(8, activation="relu", center_inputs=True, name="h"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    logger = HomeostasisLogger(tmp_path / "logs" / "centered", update_freq=2)
    model.fit(x[:128], y[:128], batch_size=32, epochs=1, verbose=0, callbacks=[logger])
    server = tensorboard_server(tmp_path / "logs")
    server.wait_for_runs(["centered"])
    status, tags = server.json("/data/plugin/histograms/tags")
    assert status == 200 and list(tags["centered"]) == ["h/input_mean"]
    query = "run=centered&tag=h/input_mean"
    status, series = server.json(f"/data/plugin/histograms/histograms?{query}")
    assert status == 200
    assert [point[1] for point in series] == [2, 4]  # [wall time, step, buckets]
    counts = [bucket[2] for bucket in series[-1][2]]
    assert np.isclose(sum(counts), 784)


class SubclassedNet(keras.Model):
    def __init__(self, homeostatic=True):
        super().__init__()
        dense = HomeostaticDense if homeostatic else keras.layers.Dense
        self.hidden = dense(8, activation="relu", name="h")
        self.out = keras.layers.Dense(10, activation="softmax")

    def call(self, inputs, training=None):
        return self.out(self.hidden(inputs, training=training))


def test_a_subclassed_model_is_logged_from_its_first_fit(tmp_path, mnist_slice):
    # Its layers have no input shape when `fit` starts: nothing may trace it.
    x, y = mnist_slice
    model = SubclassedNet()
    model.compile("sgd", "sparse_categorical_crossentropy")
    logger = HomeostasisLogger(tmp_path / "run", update_freq=2)
    model.fit(x[:64], y[:64], batch_size=16, epochs=1, verbose=0, callbacks=[logger])
    values, contents = logged(tmp_path / "run")
    assert list(contents) == ["h"] and sorted(values["h"]) == [2, 4]


def test_a_subclassed_plain_model_is_probed_from_its_first_fit(tmp_path, mnist_slice):
    x, y = mnist_slice
    model = SubclassedNet(homeostatic=False)
    model.compile("sgd", "sparse_categorical_crossentropy")
    logger = HomeostasisLogger(tmp_path / "run", update_freq=2, probe_data=x[:32])
    model.fit(x[:64], y[:64], batch_size=16, epochs=1, verbose=0, callbacks=[logger])
    values, contents = logged(tmp_path / "run")
    # The output layer, found by tracing the model once it is built, is left out.
    assert list(contents) == ["h"] and sorted(values["h"]) == [2, 4]
    assert contents["h"]["scaled"] is False


def test_probe_measures_the_spread_of_a_linear_layer(tmp_path, mnist_slice):
    # Dense(activation=None) -> BatchNorm -> ReLU(): the Dense output is the
    # pre-activation, so the probe logs its spread.
    x, y = mnist_slice
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(12, name="linear"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    logger = HomeostasisLogger(tmp_path / "run", update_freq="epoch", probe_data=x[:96])
    model.fit(x[:128], y[:128], batch_size=32, epochs=1, verbose=0, callbacks=[logger])
    values, contents = logged(tmp_path / "run")
    assert set(values) == {"linear"}
    last = unpacked(values, contents, "linear", 4)
    z = keras.Model(model.inputs[0], model.get_layer("linear").output)(x[:96])
    z = keras.ops.convert_to_numpy(z).astype("float64")
    np.testing.assert_allclose(last["spread"], z.std(axis=0), rtol=1e-4)
    np.testing.assert_allclose(last["firing_rate"], (z > 0).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(last["activity"], np.abs(z).mean(axis=0), rtol=1e-5)


def test_a_plain_model_without_probe_data_is_an_error(tmp_path, mnist_slice, make_mlp):
    x, y = mnist_slice
    logger = HomeostasisLogger(tmp_path / "run")
    with pytest.raises(ValueError, match="probe_data"):
        make_mlp().fit(x[:64], y[:64], epochs=1, verbose=0, callbacks=[logger])
    logger = HomeostasisLogger(tmp_path / "run", probe_data=x[:8], layers=["nope"])
    with pytest.raises(ValueError, match="nope"):
        make_mlp().fit(x[:64], y[:64], epochs=1, verbose=0, callbacks=[logger])


def test_deep_copies_and_config(tmp_path, mnist_slice, make_mlp):
    x, y = mnist_slice
    logger = HomeostasisLogger(
        tmp_path / "run", update_freq=3, probe_data=x[:4], layers=["hidden_0"]
    )
    config = logger.get_config()
    json.dumps(config)
    arguments = set(inspect.signature(HomeostasisLogger.__init__).parameters)
    assert arguments - {"self"} == set(config)
    rebuilt = HomeostasisLogger(**config)
    assert json.dumps(rebuilt.get_config()) == json.dumps(config)
    make_mlp().fit(x[:64], y[:64], epochs=1, verbose=0, callbacks=[logger])
    clone = copy.deepcopy(logger)
    assert clone.get_config() == logger.get_config()
    assert clone._writer is None and clone.model is None

    scaling = SynapticScalingCallback(
        log_dir=tmp_path / "s",
        log_freq=7,
        rate=0.1,
        center_inputs=False,
        hold_norms=False,
    )
    config = scaling.get_config()
    assert (config["log_dir"], config["log_freq"]) == (str(tmp_path / "s"), 7)
    clone = copy.deepcopy(scaling)
    assert clone.get_config() == config
    assert clone._logger.update_freq == 7
    assert clone._logger.settings["rate"] == 0.1
    assert (
        SynapticScalingCallback(center_inputs=False, hold_norms=False).get_config()[
            "log_dir"
        ]
        is None
    )


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"log_dir": 3}, TypeError, "log_dir"),
        ({"log_dir": ""}, ValueError, "log_dir"),
        ({"update_freq": 0}, ValueError, "update_freq"),
        ({"update_freq": 1.5}, TypeError, "update_freq"),
        ({"update_freq": "step"}, TypeError, "update_freq"),
        ({"probe_data": np.zeros((0, 4))}, ValueError, "probe_data"),
        ({"probe_data": 3.0}, ValueError, "probe_data"),
        ({"layers": [1]}, TypeError, "layers"),
        ({"layers": []}, TypeError, "layers"),
        ({"settings": {"rate": -1.0}}, ValueError, "rate"),
        ({"settings": {"nope": 1}}, TypeError, "nope"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, name):
    with pytest.raises(error, match=name):
        HomeostasisLogger(**{"log_dir": "runs/x", **kwargs})


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"log_dir": "runs/x", "log_freq": 0}, ValueError),
        ({"log_freq": "step"}, TypeError),
        ({"log_dir": 3}, TypeError),
    ],
)
def test_bad_logging_arguments_of_the_scaling_callback(kwargs, error):
    name = "log_freq" if "log_freq" in kwargs else "log_dir"
    with pytest.raises(error, match=f"`{name}`"):
        SynapticScalingCallback(**kwargs)


def holder(resolver):
    """A stand-in for `model`, exposing only `distribute_strategy.cluster_resolver`."""
    strategy = types.SimpleNamespace(cluster_resolver=resolver)
    return types.SimpleNamespace(distribute_strategy=strategy)


def resolver(task_type, task_id, chief=False):
    cluster = {"worker": ["localhost:1", "localhost:2"]}
    if chief:
        cluster["chief"] = ["localhost:3"]
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id
    )


def test_only_the_chief_writes():
    is_chief = homeostasis_logger._is_chief
    assert is_chief(holder(None))
    assert is_chief(holder(resolver("worker", 0)))
    assert not is_chief(holder(resolver("worker", 1)))
    assert not is_chief(holder(resolver("worker", 0, chief=True)))
    assert is_chief(holder(resolver("chief", 0, chief=True)))
    assert is_chief(types.SimpleNamespace(distribute_strategy=None))


@pytest.fixture
def own_collective_keys():
    # As in tests/distribute: a key range of its own, so that collectives of
    # other strategies in this process never clash with this one's shapes.
    strategy = tf.distribute.MirroredStrategy
    saved = strategy._collective_key_base
    strategy._collective_key_base = 100000 * 900
    yield
    strategy._collective_key_base = saved


@pytest.mark.multi_device
def test_logging_under_mirrored_strategy(
    tmp_path, mnist_slice, make_mlp, own_collective_keys
):
    x, y = mnist_slice
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = make_mlp()
    callback = SynapticScalingCallback(
        log_dir=tmp_path / "mirrored", log_freq=4, center_inputs=False, hold_norms=False
    )
    model.fit(
        x[:256], y[:256], batch_size=32, epochs=1, verbose=0, callbacks=[callback]
    )
    values, contents = logged(tmp_path / "mirrored")
    assert sorted(values["hidden_0"]) == [4, 8]
    for layer, state in callback.bindings:
        last = unpacked(values, contents, layer.name, 8)
        traces = corrected(state, callback.settings["momentum"])
        np.testing.assert_allclose(last["activity"], traces["activity"], rtol=1e-6)
        np.testing.assert_allclose(last["firing_rate"], traces["firing_rate"])
        assert np.all(np.isfinite(last["factor"]))


def test_batch_frequency_means_every_step_as_in_keras_tensorboard(tmp_path):
    assert HomeostasisLogger(tmp_path / "a", update_freq="batch").update_freq == 1
    callback = SynapticScalingCallback(
        log_dir=str(tmp_path / "b"),
        log_freq="batch",
        center_inputs=False,
        hold_norms=False,
    )
    assert callback._logger.update_freq == 1
    assert callback.get_config()["log_freq"] == "batch"


@pytest.mark.parametrize("options", [{}, {"center_inputs": True, "hold_norms": True}])
def test_logging_reads_no_variable_through_numpy_array(
    tmp_path, mnist_slice, make_mlp, options
):
    # NumPy 2 warns (DeprecationWarning) when `np.array` reads a Keras
    # variable, whose `__array__` takes no `copy`: pytest shows it in every
    # user's test run. The logger and the held norms read `.numpy()`.
    x, y = mnist_slice
    keras.utils.set_random_seed(0)
    model = make_mlp(units=(8,))
    callback = SynapticScalingCallback(
        log_dir=str(tmp_path / "run"), log_freq=2, **options
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # a second fit reads the kernels and the step again
            model.fit(x[:64], y[:64], batch_size=16, verbose=0, callbacks=[callback])
    copies = [w for w in caught if "__array__" in str(w.message)]
    assert not copies, [f"{w.filename}:{w.lineno}" for w in copies]
    assert "hidden_0" in logged(tmp_path / "run")[1]
