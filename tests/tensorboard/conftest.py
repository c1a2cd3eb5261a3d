"""Fixtures of the TensorBoard plugin tests: event files, an in-process app,
a real `tensorboard` server on 127.0.0.1, and a small MNIST slice."""

import http.client
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

PLUGIN_ROUTE = "/data/plugin/homeostasis"
MNIST = (
    pathlib.Path(__file__).resolve().parents[3] / "shared" / "datasets" / "mnist.npz"
)


def write_run(
    run_dir, layers, steps, seed=0, scaled=True, target=None, factor_kind="scale"
):
    """Writes `unit_usage` summaries; returns `{layer: {step: activity}}`."""
    import tensorflow as tf

    from keras_homeostasis.tensorboard import summary

    rng = np.random.default_rng(seed)
    written = {name: {} for name in layers}
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        for step in steps:
            for name, units in layers.items():
                activity = rng.gamma(1.0, 1.0, units).astype("float32")
                factor = np.exp(rng.normal(0.0, 0.1, units)) if scaled else None
                summary.unit_usage(
                    name,
                    activity,
                    factor=factor,
                    target=target,
                    step=step,
                    factor_kind=factor_kind,
                )
                written[name][step] = activity
    writer.close()
    return written


@pytest.fixture(scope="session")
def run_writer():
    return write_run


@pytest.fixture(scope="session")
def plugin_client():
    """`make(logdir)`: a werkzeug client of TensorBoard's WSGI app with the plugin."""
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from werkzeug import test

    from keras_homeostasis.tensorboard.homeostasis_plugin import HomeostasisPlugin

    def make(logdir, samples=1000):
        multiplexer = plugin_event_multiplexer.EventMultiplexer(
            tensor_size_guidance={"homeostasis": samples}
        )
        multiplexer.AddRunsFromDirectory(str(logdir))
        multiplexer.Reload()
        provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
        context = base_plugin.TBContext(
            data_provider=provider,
            logdir=str(logdir),
            sampling_hints={"homeostasis": samples},
        )
        app = application.TensorBoardWSGI(
            [HomeostasisPlugin(context)], data_provider=provider
        )
        client = test.Client(app)
        client.data_provider = provider  # for tests that read the data directly
        return client

    return make


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TensorBoardServer:
    """`tensorboard --logdir DIR --host 127.0.0.1 --port P --reload_interval 0`."""

    def __init__(self, logdir, cwd):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(pathlib.Path(cwd) / "tensorboard.log", "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
            + ["--host", "127.0.0.1", "--port", str(self.port)]
            + ["--reload_interval", "0"],
            cwd=cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"},
        )

    def get(self, path):
        """`(status, headers, body)`; `path` is sent as is, never normalised."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            connection.putrequest("GET", path, skip_accept_encoding=True)
            connection.endheaders()
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def json(self, path):
        status, _, body = self.get(path)
        return status, json.loads(body) if body else None

    def wait_for_runs(self, runs, timeout=90):
        """Waits until the plugin lists every run in `runs` (data loaded)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                break
            try:
                status, body = self.json(PLUGIN_ROUTE + "/runs")
            except (OSError, ValueError):
                status, body = None, None
            if status == 200 and set(runs) <= {r["run"] for r in body["runs"]}:
                return body
            time.sleep(0.5)
        self.log.seek(0)
        raise AssertionError(f"TensorBoard did not serve {runs}:\n{self.log.read()}")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def tensorboard_server(tmp_path_factory, installed_plugins):
    """`start(logdir)`: a real TensorBoard with the installed plugin, stopped after."""
    servers = []

    def start(logdir):
        if "homeostasis" not in installed_plugins:
            pytest.skip(
                "keras_homeostasis is not installed with its tensorboard_plugins "
                "entry point: run `pip install -e .`"
            )
        server = TensorBoardServer(logdir, tmp_path_factory.mktemp("tensorboard"))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def installed_plugins():
    """`tensorboard_plugins` entry points as a fresh process outside the checkout
    sees them (a stale egg-info in the working tree would shadow them here)."""
    code = (
        "import json; from importlib import metadata; "
        "print(json.dumps({e.name: e.value for e in "
        "metadata.entry_points(group='tensorboard_plugins')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd="/", capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="session")
def package_installed():
    code = "from importlib import metadata; metadata.version('keras-homeostasis')"
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True)
    return out.returncode == 0


@pytest.fixture(scope="session")
def mnist_slice():
    """`(x[1024, 784] in [0, 1], y[1024])` from real MNIST, or skip."""
    if not MNIST.exists():
        pytest.skip(f"real MNIST not found at {MNIST} (../shared/datasets)")
    with np.load(MNIST) as data:
        x = data["x_train"][:1024].reshape(-1, 784).astype("float32") / 255.0
        y = data["y_train"][:1024].astype("int32")
    return x, y


def mlp(batchnorm=False, units=(32, 16)):
    """A small ReLU MLP on MNIST; with `batchnorm`, BN after each hidden layer."""
    import keras

    inputs = keras.Input((784,))
    h = inputs
    for k, n in enumerate(units):
        h = keras.layers.Dense(n, activation="relu", name=f"hidden_{k}")(h)
        if batchnorm:
            h = keras.layers.BatchNormalization(name=f"bn_{k}")(h)
    outputs = keras.layers.Dense(10, activation="softmax", name="out")(h)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


@pytest.fixture
def make_mlp():
    return mlp
