"""The plugin's routes, in-process on TensorBoard's own WSGI app."""

import logging
import pathlib
import shutil
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorboard import context as tb_context
from tensorboard.compat.proto import summary_pb2
from tensorboard.data import provider as tb_provider

from keras_homeostasis.tensorboard import metadata
from keras_homeostasis.tensorboard import summary

PLUGIN = "/data/plugin/homeostasis"
VIEWS = ["heatmap", "sorted", "factors", "stats", "firing_rate", "spread"]
# Event files written by the first summary layout (see its README.md).
VERSION_1_RUN = pathlib.Path(__file__).parents[1] / "data" / "tensorboard_v1"


@pytest.fixture(scope="module")
def logdir(tmp_path_factory, run_writer):
    path = tmp_path_factory.mktemp("logs")
    run_writer(path / "scaling", {"dense": 48, "dense_1": 16}, range(0, 200, 10))
    run_writer(path / "batchnorm", {"dense": 48}, range(0, 200, 20), scaled=False)
    return path


def get_json(client, path):
    response = client.get(path)
    return response.status_code, response.get_json(), response


def test_listing_and_runs(logdir, plugin_client):
    client = plugin_client(logdir)
    _, listing, _ = get_json(client, "/data/plugins_listing")
    entry = listing["homeostasis"]
    assert entry["enabled"] is True
    assert entry["tab_name"] == "Homeostasis"
    assert entry["loading_mechanism"] == {
        "type": "IFRAME",
        "module_path": PLUGIN + "/index.js",
    }
    status, body, _ = get_json(client, PLUGIN + "/runs")
    assert status == 200
    assert body == {
        "runs": [
            {
                "run": "batchnorm",
                "layers": [
                    {
                        "layer": "dense",
                        "units": 48,
                        "scaled": False,
                        "factor": "scale",
                        "last_step": 180,
                    }
                ],
            },
            {
                "run": "scaling",
                "layers": [
                    {
                        "layer": "dense",
                        "units": 48,
                        "scaled": True,
                        "factor": "scale",
                        "last_step": 190,
                    },
                    {
                        "layer": "dense_1",
                        "units": 16,
                        "scaled": True,
                        "factor": "scale",
                        "last_step": 190,
                    },
                ],
            },
        ]
    }


def test_runs_say_where_the_factor_is_a_held_kernel_norm(
    plugin_client, run_writer, tmp_path
):
    run_writer(tmp_path / "held", {"d": 4}, [1, 2], factor_kind="norm")
    run_writer(tmp_path / "scaling", {"d": 4}, [1, 2])
    status, body, _ = get_json(plugin_client(tmp_path), PLUGIN + "/runs")
    assert status == 200
    kinds = {r["run"]: [x["factor"] for x in r["layers"]] for r in body["runs"]}
    assert kinds == {"held": ["norm"], "scaling": ["scale"]}


def test_each_view(logdir, plugin_client, run_writer, tmp_path):
    written = run_writer(tmp_path / "exact", {"d": 8}, [5, 15], seed=3)
    client = plugin_client(logdir)
    query = "?run=scaling&layer=dense"
    status, heatmap, _ = get_json(client, PLUGIN + "/heatmap" + query + "&rows=12")
    assert status == 200
    assert heatmap["steps"] == list(range(0, 200, 10))
    assert heatmap["units"] == 48 and heatmap["rows"] == 12
    assert len(heatmap["values"]) == 12 and len(heatmap["values"][0]) == 20

    exact = plugin_client(tmp_path)
    status, curve, _ = get_json(exact, PLUGIN + "/sorted?run=exact&layer=d&step=4")
    assert status == 200 and curve["step"] == 5
    expected = np.sort(written["d"][5])[::-1]
    np.testing.assert_allclose(curve["activity"], expected, rtol=1e-3)

    status, factors, _ = get_json(client, PLUGIN + "/factors" + query + "&steps=5")
    assert status == 200 and len(factors["steps"]) == 5
    assert len(factors["bands"]) == len(factors["quantiles"]) == 7
    _, plain, _ = get_json(client, PLUGIN + "/factors?run=batchnorm&layer=dense")
    assert all(v == 1.0 for band in plain["bands"] for v in band)

    status, stats, _ = get_json(client, PLUGIN + "/stats" + query)
    assert status == 200
    assert set(stats) == {"steps", "entropy", "cv", "dead_fraction"}
    assert all(0.0 < v <= 1.0 for v in stats["entropy"])


def test_the_layer_bundle_holds_every_view(logdir, plugin_client):
    client = plugin_client(logdir)
    status, bundle, _ = get_json(client, PLUGIN + "/layer?run=scaling&layer=dense")
    assert status == 200
    assert set(bundle) == set(VIEWS)
    for view in VIEWS:
        _, alone, _ = get_json(client, f"{PLUGIN}/{view}?run=scaling&layer=dense")
        assert bundle[view] == alone, view
    _, at_step, _ = get_json(client, PLUGIN + "/layer?run=scaling&layer=dense&step=42")
    assert at_step["sorted"]["step"] == 40


@pytest.mark.parametrize(
    "path, status, message",
    [
        ("/heatmap?run=nope&layer=dense", 404, "Unknown run: 'nope'"),
        ("/sorted?run=scaling&layer=nope", 404, "no homeostasis data for layer"),
        ("/factors?run=batchnorm&layer=dense_1", 404, "no homeostasis data"),
        ("/stats?layer=dense", 400, "Missing query argument `run`"),
        ("/stats?run=scaling", 400, "Missing query argument `layer`"),
        ("/layer?run=nope&layer=dense", 404, "Unknown run: 'nope'"),
        ("/heatmap?run=scaling&layer=dense&rows=0", 400, "`rows`"),
        ("/heatmap?run=scaling&layer=dense&steps=9999", 400, "`steps`"),
        ("/sorted?run=scaling&layer=dense&step=x", 400, "`step`"),
    ],
)
def test_bad_requests_answer_with_a_message(
    logdir, plugin_client, path, status, message
):
    code, body, response = get_json(plugin_client(logdir), PLUGIN + path)
    assert code == status
    assert message in body["error"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_frontend_files_are_served_with_security_headers(logdir, plugin_client, caplog):
    client = plugin_client(logdir)
    with caplog.at_level(logging.WARNING):
        for path in ["/index.js", "/static/index.js", "/static/heatmap.js"]:
            response = client.get(PLUGIN + path)
            assert response.status_code == 200, path
            assert response.headers["Content-Type"].startswith("text/javascript")
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        css = client.get(PLUGIN + "/static/style.css")
        assert css.headers["Content-Type"].startswith("text/css")
        assert b"export async function render" in client.get(PLUGIN + "/index.js").data
        get_json(client, PLUGIN + "/runs")
    # TensorBoard's security validator warns about any response lacking headers.
    assert "will become an error" not in caplog.text


@pytest.mark.parametrize(
    "path",
    [
        "/static/../homeostasis_plugin.py",
        "/static/..%2fhomeostasis_plugin.py",
        "/static/%2e%2e/homeostasis_plugin.py",
        "/static/%2e%2e%2f%2e%2e%2f__init__.py",
        "/static/..\\metadata.py",
        "/static/static/index.js",
        "/static/./index.js",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/",
        "/static/index.js%00.css",
        "/static/INDEX.JS",
    ],
)
def test_static_routes_refuse_path_traversal(logdir, plugin_client, path):
    response = plugin_client(logdir).get(PLUGIN + path)
    assert response.status_code == 404
    assert b"import" not in response.data and b"def " not in response.data


def write_raw(run_dir, tag, tensor, content):
    """A summary with the plugin's name but arbitrary content and tensor."""
    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=content
        ),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    )
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        tf.summary.write(tag, tensor, step=1, metadata=meta)
    writer.close()


def test_malformed_and_partial_files_never_break_the_dashboard(
    logdir, plugin_client, run_writer, tmp_path
):
    # A truncated copy of a real event file, garbage, and foreign summaries.
    source = next((logdir / "scaling").glob("events.out.tfevents.*"))
    data = source.read_bytes()
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / source.name).write_bytes(data[: len(data) // 2 + 7])
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "events.out.tfevents.1.garbage").write_bytes(
        b"\x00\xffnot an event file" * 50
    )
    write_raw(tmp_path / "foreign", "bad_json", tf.zeros(3), b"{not json")
    write_raw(tmp_path / "foreign", "new_version", tf.zeros(3), b'{"version": 3}')
    write_raw(tmp_path / "foreign", "short", tf.zeros(5), metadata.content(4, True))
    write_raw(
        tmp_path / "foreign", "strings", tf.constant(["a"]), metadata.content(1, 0)
    )
    writer = tf.summary.create_file_writer(str(tmp_path / "foreign"))
    with writer.as_default():
        summary.unit_usage("good", [1.0, 2.0], step=3)
    writer.close()

    client = plugin_client(tmp_path)
    status, body, _ = get_json(client, PLUGIN + "/runs")
    assert status == 200
    runs = {r["run"]: [x["layer"] for x in r["layers"]] for r in body["runs"]}
    assert runs["foreign"] == ["good", "short", "strings"]
    assert "partial" in runs and "garbage" not in runs
    partial = [x for x in runs["partial"]]
    for view in VIEWS:
        code, _, _ = get_json(client, f"{PLUGIN}/{view}?run=foreign&layer=good")
        assert code == 200
        code, body, _ = get_json(client, f"{PLUGIN}/{view}?run=foreign&layer=short")
        assert code == 404 and "no readable homeostasis data" in body["error"]
        code, _, _ = get_json(client, f"{PLUGIN}/{view}?run=foreign&layer=strings")
        assert code == 404
        code, _, _ = get_json(client, f"{PLUGIN}/{view}?run=foreign&layer=bad_json")
        assert code == 404
        for layer in partial:
            code, _, _ = get_json(client, f"{PLUGIN}/{view}?run=partial&layer={layer}")
            assert code == 200


def test_firing_rate_and_spread_quantiles_are_served(tmp_path, plugin_client):
    rng = np.random.default_rng(1)
    rates = rng.uniform(0.0, 1.0, (3, 9)).astype("float32")
    spreads = rng.gamma(2.0, 0.5, (3, 9)).astype("float32")
    writer = tf.summary.create_file_writer(str(tmp_path / "run"))
    with writer.as_default():
        for k, step in enumerate([2, 4, 6]):
            summary.unit_usage(
                "d",
                rng.gamma(1.0, 1.0, 9),
                firing_rate=rates[k],
                spread=spreads[k],
                step=step,
            )
            summary.unit_usage("probed", [1.0, 2.0], firing_rate=[0.0, 0.5], step=step)
    writer.close()
    client = plugin_client(tmp_path)
    for view, written in [("firing_rate", rates), ("spread", spreads)]:
        status, body, _ = get_json(client, f"{PLUGIN}/{view}?run=run&layer=d")
        assert status == 200 and body["measured"] is True
        assert body["steps"] == [2, 4, 6] and body["units"] == 9
        expected = np.quantile(written, body["quantiles"], axis=1)
        np.testing.assert_allclose(body["bands"], expected, rtol=1e-3)
    # A probed layer with a built-in activation logs no spread.
    _, rate, _ = get_json(client, f"{PLUGIN}/firing_rate?run=run&layer=probed")
    assert rate["measured"] is True and rate["bands"][-1] == [0.5] * 3
    _, spread, _ = get_json(client, f"{PLUGIN}/spread?run=run&layer=probed")
    assert spread["measured"] is False
    assert all(v is None for band in spread["bands"] for v in band)


def test_runs_in_the_first_layout_still_load(tmp_path, plugin_client):
    client = plugin_client(VERSION_1_RUN)
    status, body, _ = get_json(client, PLUGIN + "/runs")
    assert status == 200
    assert body["runs"] == [
        {
            "run": "scaling_v1",
            "layers": [
                {
                    "layer": "dense",
                    "units": 6,
                    "scaled": True,
                    "factor": "scale",
                    "last_step": 30,
                },
                {
                    "layer": "probe",
                    "units": 4,
                    "scaled": False,
                    "factor": "scale",
                    "last_step": 30,
                },
            ],
        }
    ]
    status, bundle, _ = get_json(client, PLUGIN + "/layer?run=scaling_v1&layer=dense")
    assert status == 200
    assert bundle["stats"]["steps"] == [10, 20, 30]
    assert bundle["factors"]["measured"] is True
    assert len(set(bundle["factors"]["bands"][3])) == 3  # Real factors, not 1.
    assert bundle["sorted"]["units"] == 6 and None not in bundle["sorted"]["activity"]
    for view in ["firing_rate", "spread"]:
        assert bundle[view]["measured"] is False
        assert bundle[view]["steps"] == [10, 20, 30]

    # New steps logged into the old run folder: one series, both layouts.
    run = tmp_path / "scaling_v1"
    shutil.copytree(VERSION_1_RUN / "scaling_v1", run)
    writer = tf.summary.create_file_writer(str(run))
    with writer.as_default():
        summary.unit_usage("dense", np.ones(6), firing_rate=np.full(6, 0.5), step=40)
    writer.close()
    client = plugin_client(tmp_path)
    _, rate, _ = get_json(client, PLUGIN + "/firing_rate?run=scaling_v1&layer=dense")
    assert rate["steps"] == [10, 20, 30, 40]
    assert rate["bands"][3] == [None, None, None, 0.5]


def test_non_finite_values_become_null(tmp_path, plugin_client):
    writer = tf.summary.create_file_writer(str(tmp_path / "run"))
    with writer.as_default():
        summary.unit_usage("d", [1.0, np.nan, 2.0], factor=[1.0, np.inf, 1.0], step=1)
    writer.close()
    client = plugin_client(tmp_path)
    for view in VIEWS:
        response = client.get(f"{PLUGIN}/{view}?run=run&layer=d")
        assert response.status_code == 200
        assert b"NaN" not in response.data and b"Infinity" not in response.data
    _, curve, _ = get_json(client, f"{PLUGIN}/sorted?run=run&layer=d")
    assert curve["activity"] == [2.0, 1.0, None]


@pytest.mark.slow
def test_ten_thousand_steps_of_four_wide_layers_serve_at_the_cost_of_reading_them(
    tmp_path, plugin_client
):
    # 10,000 training steps logged every 10: the 1,000 samples TensorBoard keeps.
    rng = np.random.default_rng(0)
    writer = tf.summary.create_file_writer(str(tmp_path / "long"))
    base = rng.gamma(0.7, 1.0, (4, 1024)).astype("float32")
    meta = summary.summary_metadata(1024, scaled=True)
    with writer.as_default():
        for step in range(0, 10_000, 10):
            for k in range(4):
                packed = metadata.pack(base[k], np.ones(1024), base[k], [0.9, 1.0, 0.0])
                tf.summary.write(f"layer_{k}", packed, step=step, metadata=meta)
    writer.close()
    client = plugin_client(tmp_path)
    sizes = []

    def read_tensors():
        # The least any view needs: every logged vector of the four layers.
        for k in range(4):
            found = client.data_provider.read_tensors(
                tb_context.RequestContext(),
                experiment_id="",
                plugin_name="homeostasis",
                downsample=1000,
                run_tag_filter=tb_provider.RunTagFilter(["long"], [f"layer_{k}"]),
            )
            np.stack([datum.numpy for datum in found["long"][f"layer_{k}"]])

    def serve_views():
        # What the dashboard requests: the runs, then one bundle per layer.
        sizes.append(len(client.get(PLUGIN + "/runs").data))
        for k in range(4):
            response = client.get(f"{PLUGIN}/layer?run=long&layer=layer_{k}")
            assert response.status_code == 200
            assert response.get_json()["heatmap"]["rows"] == 128
            sizes.append(len(response.data))

    def cpu_seconds(work):
        # This process's CPU time, against a baseline of the same run: other
        # jobs on the machine do not count.
        start = time.process_time()
        work()
        return time.process_time() - start

    # The first calls load the events and start the app: one-off costs.
    read_tensors()
    serve_views()
    reading = cpu_seconds(read_tensors)
    serving = cpu_seconds(serve_views)
    # Serving reads the same tensors and sends each view downsampled; it
    # measured 0.3-0.5 times the reading here.
    assert serving < 2 * reading + 0.05, f"{serving:.2f} s against {reading:.2f} s"
    assert sum(sizes[-5:]) < 1_000_000


@pytest.mark.parametrize("restart", [False, True], ids=["continued", "restarted"])
def test_a_run_folder_reused_with_another_width_shows_the_newest(
    tmp_path, plugin_client, restart
):
    # Two models with a layer of the same name, logged to one run folder:
    # the second run continues the steps, or starts again at 0 (a new fit).
    first = tf.summary.create_file_writer(str(tmp_path / "run"))
    with first.as_default():
        for step in range(3):
            summary.unit_usage("dense", [1.0, 2.0, 3.0, 4.0], step=step)
    first.close()
    second = tf.summary.create_file_writer(str(tmp_path / "run"))
    later = range(3) if restart else range(3, 6)
    with second.as_default():
        for step in later:
            summary.unit_usage("dense", [1.0] * 7 + [3.0], step=step)
    second.close()
    client = plugin_client(tmp_path)
    for view in VIEWS:
        code, body, _ = get_json(client, f"{PLUGIN}/{view}?run=run&layer=dense")
        assert code == 200, body
        if "units" in body:
            assert body["units"] == 8
    _, stats, _ = get_json(client, f"{PLUGIN}/stats?run=run&layer=dense")
    assert stats["steps"] == list(later)
