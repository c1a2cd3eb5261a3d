"""Tests of the `continual` command (Online Permuted MNIST) on small settings."""

import csv
import pathlib

import keras
import numpy as np
import pytest
import yaml

from keras_homeostasis.lab import cli
from keras_homeostasis.lab import continual
from keras_homeostasis.lab import continual_report

# keras.backend.clear_session() collects garbage at every run.
pytestmark = pytest.mark.usefixtures("own_heap")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _raw(**sections):
    raw = {
        "data": {"dataset": "digits", "examples_per_task": 200, "probe_examples": 100},
        "model": {"hidden": [16, 16]},
        "training": {"learning_rate": 0.05, "steps_per_execution": 50},
        "continual": {"tasks": 3, "methods": ["backprop"], "seed": 3},
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    return raw


def _config(**sections):
    return continual.validate_config(_raw(**sections))


def _results(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_each_task_has_its_own_seeded_permutation():
    first = continual.task_permutation(0, 1, 784)
    assert sorted(first) == list(range(784))
    assert not np.array_equal(first, continual.task_permutation(0, 2, 784))
    assert not np.array_equal(first, continual.task_permutation(1, 1, 784))
    np.testing.assert_array_equal(first, continual.task_permutation(0, 1, 784))
    x = np.arange(12, dtype="float32").reshape(3, 4)
    y = np.arange(3)
    x1, y1 = continual.task_data((x, y), 0, 1, 3)
    permutation = continual.task_permutation(0, 1, 4)
    # Each example keeps its label; its pixels are moved by the permutation.
    np.testing.assert_array_equal(x1, x[y1][:, permutation])


def test_online_accuracy_is_the_accuracy_before_each_update():
    config = _config(training={"jit_compile": False})
    pool = continual.load_pool(config)
    x, y = continual.task_data(pool, 3, 1, 200)
    model = continual.build_model(config, "backprop", x.shape[1], 10)
    twin = continual.build_model(config, "backprop", x.shape[1], 10)
    twin.set_weights(model.get_weights())
    accuracy, _ = continual.online_task(model, config, x, y)
    correct = []
    for i in range(len(x)):
        prediction = keras.ops.convert_to_numpy(twin(x[i : i + 1], training=True))
        correct.append(int(np.argmax(prediction[0]) == y[i]))
        twin.train_on_batch(x[i : i + 1], y[i : i + 1])
    assert accuracy == pytest.approx(np.mean(correct), abs=1e-6)
    # Not the accuracy after training: the network learned during the pass.
    after = np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y)
    assert after > accuracy
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_dead_percentage_counts_units_zero_on_every_sample():
    activations = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    assert continual.dead_percentage(activations) == 50.0
    assert continual.dead_percentage(np.ones((5, 3))) == 0.0


def test_effective_rank_of_known_representations():
    assert continual.effective_rank(np.eye(7)) == pytest.approx(7.0)
    assert continual.effective_rank(np.tile(np.eye(5), (3, 1))) == pytest.approx(5.0)
    rank_one = np.outer(np.arange(1, 11), np.array([1.0, -2.0, 0.5]))
    assert continual.effective_rank(rank_one) == pytest.approx(1.0)
    assert continual.effective_rank(np.zeros((4, 3))) == 0.0
    # Unequal singular values give less than the rank.
    assert 1.0 < continual.effective_rank(np.diag([1.0, 0.1])) < 2.0


def test_every_method_runs_a_task_and_writes_its_row(tmp_path):
    config = _config(
        data={"examples_per_task": 100, "probe_examples": 50},
        training={"jit_compile": False},
        continual={"tasks": 1, "methods": list(continual.METHODS)},
        # Taken by the scale-invariant layers, left out of the callback.
        scaling={"norm_relaxation": 1e-4},
    )
    rows = continual.run_continual(config, out_dir=str(tmp_path), log=lambda s: None)
    assert [r["method"] for r in rows] == list(continual.METHODS)
    for row in rows:
        assert 0.0 <= float(row["online_accuracy"]) <= 1.0
        for k in (1, 2):
            assert 0.0 <= float(row[f"hidden_{k}_dead"]) <= 100.0
            assert float(row[f"hidden_{k}_weight"]) > 0.0
            assert 0.0 <= float(row[f"hidden_{k}_erank"]) <= 16.0
    for name in ["results.md", *continual_report.PLOTS]:
        assert (tmp_path / name).exists(), name
    assert "| scaling | 1 |" in (tmp_path / "results.md").read_text()


def test_results_resume_without_recomputing_and_match_one_run(tmp_path):
    methods = {"methods": ["backprop", "shrink_and_perturb"]}
    lines = []
    short = _config(continual={**methods, "tasks": 2})
    continual.run_continual(short, out_dir=str(tmp_path / "a"), log=lines.append)
    assert len(lines) == 4
    before = (tmp_path / "a" / "results.csv").read_text()
    lines.clear()
    full = _config(continual={**methods, "tasks": 3})
    continual.run_continual(full, out_dir=str(tmp_path / "a"), log=lines.append)
    assert lines[0].startswith("Resuming: 4 of 6 tasks")
    assert len(lines) == 3  # The resume line and tasks 3 of the two methods.
    assert (tmp_path / "a" / "results.csv").read_text().startswith(before)
    continual.run_continual(full, out_dir=str(tmp_path / "b"), log=lambda s: None)
    resumed, straight = _results(tmp_path / "a"), _results(tmp_path / "b")
    key = lambda r: (r["method"], int(r["task"]))  # noqa: E731
    drop = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert [drop(r) for r in sorted(resumed, key=key)] == [
        drop(r) for r in sorted(straight, key=key)
    ]


def test_a_results_folder_of_another_config_is_refused(tmp_path):
    config = _config(continual={"tasks": 1})
    continual.run_continual(config, out_dir=str(tmp_path), log=lambda s: None)
    other = _config(continual={"tasks": 1}, training={"learning_rate": 0.1})
    with pytest.raises(ValueError, match="training.learning_rate"):
        continual.run_continual(other, out_dir=str(tmp_path), log=lambda s: None)


@pytest.mark.parametrize(
    "sections, match",
    [
        ({"training": {"lerning_rate": 0.1}}, "`training.lerning_rate`"),
        ({"continual": {"tasks": 0}}, r"`continual.tasks`.*tasks=0"),
        ({"continual": {"methods": ["adam"]}}, r"`continual.methods\[0\]`.*'adam'"),
        ({"model": {"hidden": [16, -1]}}, r"`model.hidden\[1\]`.*-1"),
        ({"training": {"learning_rate": "fast"}}, r"learning_rate='fast'"),
        ({"data": {"probe_examples": 300}}, r"`data.probe_examples`.*300"),
        ({"scaling": {"rat": 0.1}}, "`scaling.rat`"),
        ({"scaling": {"rate": 2.0}}, "`rate`"),
        (
            {"scaling": {"norm_relaxation": 2}},
            r"`scaling.norm_relaxation`.*norm_relaxation=2",
        ),
        ({"optimizer": {"name": "sgd"}}, "config section `optimizer`"),
    ],
)
def test_config_errors_name_the_key_and_echo_the_value(sections, match):
    with pytest.raises(continual.ContinualConfigError, match=match):
        continual.validate_config(_raw(**sections))


@pytest.mark.parametrize("name", ["continual_quick.yaml", "continual_dohare.yaml"])
def test_shipped_configs_validate(name):
    config = continual.load_config(str(ROOT / "configs" / name))
    assert config["continual"]["methods"] == list(continual.METHODS)
    assert config["training"]["batch_size"] == 1
    assert config["data"]["dataset"].endswith("mnist.npz")


def test_long_config_is_the_quick_one_over_more_tasks():
    # The README compares the two runs' figures: nothing else may differ.
    quick = continual.load_config(str(ROOT / "configs" / "continual_quick.yaml"))
    long = continual.load_config(str(ROOT / "configs" / "continual_quick_long.yaml"))
    assert long["continual"]["tasks"] == 120
    assert long["continual"]["methods"] == [
        "backprop",
        "layernorm",
        "scaling",
        "scale_invariant_layers",
    ]
    for config in (quick, long):
        config["continual"].pop("tasks")
        config["continual"].pop("methods")
        config["output"].pop("run_dir")
    assert long == quick


def _write(tmp_path, raw):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_cli_path_errors_are_one_line(tmp_path, capsys):
    status = cli.main(["continual", str(tmp_path / "missing.yaml")])
    assert status == cli.BAD_INPUT
    assert "argument CONFIG" in _one_error_line(capsys)
    bad_data = _write(tmp_path, _raw(data={"dataset": "nowhere/mnist.npz"}))
    assert cli.main(["continual", bad_data]) == cli.BAD_INPUT
    assert "`data.dataset`" in _one_error_line(capsys)
    a_file = tmp_path / "file"
    a_file.write_text("")
    good = _write(tmp_path, _raw())
    assert cli.main(["continual", good, "--out", str(a_file)]) == cli.BAD_INPUT
    assert "argument --out" in _one_error_line(capsys)
    bad_key = _write(tmp_path, _raw(continual={"task": 2}))
    assert cli.main(["continual", bad_key]) == cli.BAD_INPUT
    assert "`continual.task`" in _one_error_line(capsys)


def test_cli_runs_and_reports(tmp_path, capsys):
    path = _write(tmp_path, _raw(output={"run_dir": str(tmp_path / "run")}))
    assert cli.main(["continual", path, "--tasks", "2"]) == 0
    out = capsys.readouterr().out
    assert "[2/2] backprop task 2: online accuracy" in out
    assert len(_results(tmp_path / "run")) == 2
    assert (tmp_path / "run" / "online_accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_seed_overrides_the_configs_and_needs_its_own_folder(tmp_path, capsys):
    run = tmp_path / "run"
    path = _write(tmp_path, _raw(output={"run_dir": str(run)}))
    assert cli.main(["continual", path, "--tasks", "1"]) == 0
    capsys.readouterr()
    args = ["continual", path, "--tasks", "1", "--seed", "4"]
    assert cli.main(args) == cli.BAD_INPUT
    assert "`continual.seed`=3, not 4" in capsys.readouterr().err
    other = tmp_path / "seed4"
    assert cli.main([*args, "--out", str(other)]) == 0
    saved = yaml.safe_load((other / "continual_config.json").read_text())
    assert saved["continual"]["seed"] == 4
    first, second = _results(run)[0], _results(other)[0]
    assert first["online_accuracy"] != second["online_accuracy"]


def test_report_windows_and_final_metrics():
    rows = []
    for task, accuracy in enumerate(
        [0.5, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    ):
        rows.append(
            {
                "method": "m",
                "task": str(task + 1),
                "online_accuracy": str(accuracy),
                "seconds": "2",
                "hidden_1_dead": "10",
                "hidden_2_dead": "30",
                "hidden_1_erank": "4",
                "hidden_2_erank": "6",
            }
        )
    s = continual_report.summary(rows)["m"]
    assert s["window"] == 2  # 10% of 11 tasks, rounded up.
    assert s["first"] == pytest.approx(0.7)
    assert s["last"] == pytest.approx(0.05)
    assert s["best"] == pytest.approx(0.85)
    assert s["dead"] == pytest.approx(20.0) and s["erank"] == pytest.approx(5.0)
    assert s["trend"] == pytest.approx(-0.7727, abs=1e-4)
    assert "| m | 11 | 0.7000 | 0.0500 | 0.8500 | -0.7727 | 20.0 | 5.0 | 2.0 |" in (
        continual_report.table(rows)
    )


def test_trend_is_the_least_squares_slope_per_ten_tasks():
    assert continual_report.trend([0.8, 0.7, 0.6]) == pytest.approx(-1.0)
    assert continual_report.trend([0.7, 0.7, 0.7, 0.7]) == pytest.approx(0.0)
    assert continual_report.trend([0.7]) is None


def test_scale_invariant_layers_take_the_norm_relaxation():
    config = _config(scaling={"norm_relaxation": 1e-4, "rate": 0.05})
    model = continual.build_model(config, "scale_invariant_layers", 16, 3)
    layer = model.get_layer("hidden_1")
    assert layer.scale_invariant and layer.norm_relaxation == 1e-4
    assert layer.rate == 0.05
    (callback,) = continual.method_callbacks(config, "scaling")
    assert callback.settings["rate"] == 0.05
