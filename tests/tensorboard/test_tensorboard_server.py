"""A real `tensorboard` process on 127.0.0.1 serving the installed plugin."""

import json

import pytest
import tensorflow as tf

from keras_homeostasis.tensorboard import metadata
from keras_homeostasis.tensorboard import summary

PLUGIN = "/data/plugin/homeostasis"


@pytest.fixture(scope="module")
def server(tmp_path_factory, run_writer, tensorboard_server):
    logdir = tmp_path_factory.mktemp("logs")
    run_writer(logdir / "scaling", {"dense": 24, "conv": 8}, range(0, 100, 10))
    run_writer(logdir / "batchnorm", {"dense": 24}, range(0, 100, 25), scaled=False)
    # 1,500 logged steps: more than TensorBoard keeps of a third-party plugin.
    writer = tf.summary.create_file_writer(str(logdir / "long"))
    meta = summary.summary_metadata(3, scaled=False)
    with writer.as_default():
        for step in range(1500):
            packed = metadata.pack([1, 2, step % 7], [1] * 3, [2] * 3, [1, 0, 0])
            tf.summary.write("tiny", packed, step=step, metadata=meta)
    writer.close()
    (logdir / "broken").mkdir()
    (logdir / "broken" / "events.out.tfevents.0.broken").write_bytes(b"\x00" * 300)
    started = tensorboard_server(logdir)
    started.wait_for_runs(["scaling", "batchnorm", "long"])
    return started


def test_the_homeostasis_tab_is_listed(server):
    status, listing = server.json("/data/plugins_listing")
    assert status == 200
    assert listing["homeostasis"]["enabled"] is True
    assert listing["homeostasis"]["tab_name"] == "Homeostasis"
    assert listing["homeostasis"]["loading_mechanism"]["type"] == "IFRAME"


def test_every_route_answers_json_with_security_headers(server):
    status, body = server.json(PLUGIN + "/runs")
    layers = {
        r["run"]: {x["layer"]: x["units"] for x in r["layers"]} for r in body["runs"]
    }
    assert layers == {
        "batchnorm": {"dense": 24},
        "long": {"tiny": 3},
        "scaling": {"conv": 8, "dense": 24},
    }
    for view in ["heatmap", "sorted", "factors", "stats"]:
        status, headers, raw = server.get(f"{PLUGIN}/{view}?run=scaling&layer=dense")
        assert status == 200, raw
        assert headers["Content-Type"].startswith("application/json")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert json.loads(raw)["steps" if view != "sorted" else "step"] is not None


def test_the_plugin_keeps_a_thousand_steps_not_ten(server):
    status, stats = server.json(PLUGIN + "/stats?run=long&layer=tiny&steps=1000")
    assert status == 200
    assert len(stats["steps"]) == 1000
    assert stats["steps"][-1] == 1499


def test_unknown_run_or_layer(server):
    status, body = server.json(PLUGIN + "/heatmap?run=nope&layer=dense")
    assert status == 404 and "Unknown run" in body["error"]
    status, body = server.json(PLUGIN + "/heatmap?run=scaling&layer=nope")
    assert status == 404 and "nope" in body["error"]
    status, body = server.json(PLUGIN + "/heatmap?run=scaling")
    assert status == 400 and "`layer`" in body["error"]


def test_the_iframe_entry_page_imports_the_module(server):
    status, headers, body = server.get("/data/plugin_entry.html?name=homeostasis")
    assert status == 200
    assert "script-src" in headers["Content-Security-Policy"]
    assert b'import("./index.js")' in body
    status, headers, body = server.get(PLUGIN + "/index.js")
    assert status == 200 and b"export async function render" in body


@pytest.mark.parametrize(
    "path",
    [
        "/static/../homeostasis_plugin.py",
        "/static/../../tensorboard/homeostasis_plugin.py",
        "/static/%2e%2e/homeostasis_plugin.py",
        "/static/..%2f..%2f__init__.py",
        "/static/%2e%2e%2f%2e%2e%2fsynaptic_scaling_callback.py",
        "/static/..%5chomeostasis_plugin.py",
        "/static/%2fetc%2fpasswd",
    ],
)
def test_static_files_refuse_traversal_over_http(server, path):
    status, _, body = server.get(PLUGIN + path)
    assert status == 404
    assert b"import " not in body and b"passwd" not in body
