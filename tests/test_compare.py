"""Tests of `compare`'s batch-size and learning-rate axes (`compare.batch_sizes`,
`compare.learning_rates`, `compare.train_examples`, `compare.lr_scaling`)."""

import csv
import math
import os
import pathlib

import pytest

from keras_homeostasis.lab import compare
from keras_homeostasis.lab import compare_report
from keras_homeostasis.lab import config as config_lib

# keras.backend.clear_session() collects garbage at every run.
pytestmark = pytest.mark.usefixtures("own_heap")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _sweep_config(**compare_keys):
    return config_lib.validate_config(
        {
            "data": {"dataset": "digits", "limit": 100, "batch_size": 25},
            "model": {"hidden": [8]},
            "optimizer": {"name": "sgd"},
            "training": {"epochs": 1},
            "compare": {
                "methods": ["none", "scaling"],
                "seeds": [0],
                "accuracy_threshold": 0.05,
                **compare_keys,
            },
        }
    )


def test_grid_has_a_batch_size_and_a_learning_rate_axis():
    config = _sweep_config(
        batch_sizes=[1, 4], learning_rates=[0.01, 0.1], train_examples=20, seeds=[0, 1]
    )
    runs = compare.grid(config)
    assert len(runs) == 2 * 2 * 2 * 2
    assert {(r["batch_size"], r["learning_rate"]) for r in runs} == {
        (1, 0.01),
        (1, 0.1),
        (4, 0.01),
        (4, 0.1),
    }
    assert {r["train_examples"] for r in runs} == {20}
    assert len({compare.run_key(r) for r in runs}) == len(runs)
    keys = list(compare.KEY_COLUMNS) + ["batch_size", "learning_rate", "train_examples"]
    assert compare.key_columns(config) == keys
    header = compare.columns(config)
    assert header[: len(keys)] == keys
    assert set(compare.SWEEP_RESULT_COLUMNS) <= set(header)


def test_learning_rate_scaling_rules():
    assert compare.learning_rate(0.05, 32, 128, "sqrt") == pytest.approx(0.025)
    assert compare.learning_rate(0.05, 32, 128, "linear") == pytest.approx(0.0125)
    assert compare.learning_rate(0.05, 32, 128, "none") == pytest.approx(0.05)
    assert compare.learning_rate(0.1, 512, 128, "sqrt") == pytest.approx(0.2)
    # The optimizer's default (sgd 0.05) or the swept rate, at data.batch_size 25.
    config = _sweep_config(batch_sizes=[1, 25], train_examples=25)
    run_1, run_25 = compare.grid(config)[0], compare.grid(config)[-1]
    assert compare.run_learning_rate(config, run_1) == pytest.approx(0.05 / 5)
    assert compare.run_learning_rate(config, run_25) == pytest.approx(0.05)
    config = _sweep_config(learning_rates=[0.3], batch_sizes=[100], train_examples=5)
    run = compare.grid(config)[0]
    assert compare.run_learning_rate(config, run) == pytest.approx(0.6)


def test_steps_per_execution_auto_keeps_a_few_calls_per_epoch():
    config = _sweep_config(steps_per_execution="auto")
    assert compare.steps_per_execution(config, 6000) == 250
    assert compare.steps_per_execution(config, 47) == 11
    assert compare.steps_per_execution(config, 3) == 1
    assert compare.steps_per_execution(_sweep_config(), 6000) == 1  # training's


def test_every_batch_size_trains_on_train_examples_then_resumes(tmp_path):
    out = str(tmp_path / "out")
    config = _sweep_config(
        batch_sizes=[1, 2, 25], train_examples=25, steps_per_execution="auto"
    )
    rows = compare.run_comparison(config, out_dir=out, log=lambda s: None)
    assert len(rows) == 6
    for row in rows:
        batch = int(row["batch_size"])
        assert int(row["steps"]) == math.ceil(25 / batch)  # partial calls included
        assert row["train_examples"] == "25"
        expected = compare.learning_rate(0.05, batch, 25, "sqrt")
        assert float(row["effective_learning_rate"]) == pytest.approx(expected, 1e-5)
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "### Test accuracy by batch size" in markdown
    assert "| method | batch 1 | batch 2 | batch 25 |" in markdown
    assert "### Usage (entropy / dead) by batch size" in markdown
    assert "#### batch size 2" in markdown
    plot = tmp_path / "out" / compare_report.PLOT_NAME
    assert plot.read_bytes()[:4] == b"\x89PNG"
    # A rerun trains nothing; a new batch size trains only its own runs.
    lines = []
    compare.run_comparison(config, out_dir=out, log=lines.append)
    assert lines == ["Resuming: 6 of 6 runs are already in " + out + "/results.csv"]
    config["compare"]["batch_sizes"] = [1, 2, 5, 25]
    lines = []
    rows = compare.run_comparison(config, out_dir=out, log=lines.append)
    assert lines[0].startswith("Resuming: 6 of 8")
    assert len(lines) == 3 and all("batch_size=5" in line for line in lines[1:])
    assert [r["batch_size"] for r in rows].count("5") == 2


def test_train_examples_beyond_the_training_set_is_an_error(tmp_path):
    config = _sweep_config(batch_sizes=[1], train_examples=101)
    with pytest.raises(config_lib.ConfigError) as info:
        compare.run_comparison(config, out_dir=str(tmp_path), log=lambda s: None)
    assert "`compare.train_examples`" in str(info.value)
    assert "compare.train_examples=101" in str(info.value)


def _row(method, lr, seed, accuracy, diverged="0", batch=None):
    row = {
        "architecture": "mlp",
        "optimizer": "sgd",
        "method": method,
        "seed": str(seed),
        "learning_rate": lr,
        "test_accuracy": accuracy,
        "diverged": diverged,
        "step_ms": "1.0",
        "epochs_to_threshold": "",
        "hidden_1_entropy": "0.8",
        "hidden_1_cv": "0.5",
        "hidden_1_dead": "0.1",
        "hidden_2_entropy": "0.6",
        "hidden_2_cv": "0.5",
        "hidden_2_dead": "0.3",
    }
    if batch is not None:
        row["batch_size"] = batch
        row["effective_learning_rate"] = lr
    return row


def test_report_gives_the_largest_learning_rate_that_trains():
    config = _sweep_config(learning_rates=[0.01, 0.1, 0.3], accuracy_threshold=0.9)
    rows = [
        _row("none", "0.01", 0, "0.95"),
        _row("none", "0.1", 0, "0.93"),
        _row("none", "0.3", 0, "0.10", diverged="1"),
        _row("scaling", "0.01", 0, "0.95"),
        _row("scaling", "0.1", 0, "0.95"),
        _row("scaling", "0.3", 0, "0.92"),
        _row("scaling", "0.3", 1, "0.85"),  # one seed below the threshold
    ]
    text = compare_report.markdown(rows, config)
    assert "### Largest learning rate at which each method trains" in text
    assert "| none | 0.1 |" in text and "| scaling | 0.1 |" in text
    assert "| method | lr 0.01 | lr 0.1 | lr 0.3 |" in text
    assert "| none | 0.950 | 0.930 | 0.100 (1/1 diverged) |" in text
    assert "0.885 ± 0.049 |" in text
    assert "test accuracy is >= 0.9" in text


def test_report_tables_per_batch_size(tmp_path):
    config = _sweep_config(batch_sizes=[1, 8], train_examples=8)
    rows = [
        _row(m, "0.01", seed, acc, batch=b)
        for m, b, seed, acc in [
            ("none", "1", 0, "0.90"),
            ("none", "1", 1, "0.80"),
            ("none", "8", 0, "0.95"),
            ("scaling", "1", 0, "0.91"),
            ("scaling", "8", 0, "0.97"),
        ]
    ]
    for row in rows:
        del row["learning_rate"]
    text = compare_report.markdown(rows, config)
    assert "| method | batch 1 | batch 8 |" in text
    assert "| none | 0.850 ± 0.071 | 0.950 |" in text
    assert "| none | 0.700 / 0.200 | 0.700 / 0.200 |" in text  # layer means
    assert "lr * (b / 25) ** k, k = 0.5" in text
    path = tmp_path / "results.md"
    compare_report.write_markdown(str(path), rows, config)
    assert (tmp_path / compare_report.PLOT_NAME).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", ["mnist_mlp", "mnist_cnn"])
def test_configs_without_sweeps_keep_their_results_columns(name):
    config = config_lib.load_config(str(ROOT / "configs" / f"compare_{name}.yaml"))
    with open(ROOT / "docs" / "results" / f"{name}.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert compare.columns(config) == reader.fieldnames
    assert compare.key_columns(config) == list(compare.KEY_COLUMNS)

    # The dataset column holds the path resolved where the rows were made:
    # compare it by file name, every other key column exactly.
    def key(values):
        values = dict(zip(compare.KEY_COLUMNS, values))
        values["dataset"] = os.path.basename(values["dataset"])
        return tuple(values.values())

    keys = {key(compare.run_key(run)) for run in compare.grid(config)}
    assert all(key(tuple(r[c] for c in compare.KEY_COLUMNS)) in keys for r in rows)
    assert not any(c in run for run in compare.grid(config) for c in ("batch_size",))


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_batch_size_configs(architecture):
    path = ROOT / "configs" / f"compare_batch_size_{architecture}.yaml"
    config = config_lib.load_config(str(path))
    assert config["compare"]["batch_sizes"] == [1, 2, 4, 8, 32, 128]
    assert config["compare"]["architectures"] == [architecture]
    assert config["compare"]["train_examples"] == 6000
    methods = len(config["compare"]["methods"])
    assert len(compare.grid(config)) == 6 * 3 * methods
    assert methods >= 6


def test_learning_rate_sweep_config():
    config = config_lib.load_config(str(ROOT / "configs" / "compare_lr_sweep.yaml"))
    assert config["compare"]["learning_rates"] == [0.01, 0.03, 0.1, 0.3]
    assert "learning_rate" in compare.key_columns(config)
    assert "batch_size" not in compare.key_columns(config)


@pytest.mark.slow
def test_every_method_trains_with_xla_and_steps_per_execution(tmp_path):
    config = _sweep_config(
        methods=[
            "none",
            "batchnorm",
            "layernorm",
            "groupnorm",
            "weightnorm",
            "scaling",
        ],
        batch_sizes=[2],
        train_examples=25,
        steps_per_execution="auto",
        jit_compile=True,
    )
    rows = compare.run_comparison(config, out_dir=str(tmp_path), log=lambda s: None)
    assert [int(r["steps"]) for r in rows] == [13] * 6
    assert all(r["diverged"] == "0" for r in rows)


def test_the_batch_size_plot_draws_methods_past_ten_in_another_style():
    # Matplotlib has ten colours: the eleventh method must not look like the
    # first (the MLP batch-size sweep compares eleven).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        {"method": f"m{k}", "batch_size": str(b), "test_accuracy": "0.9"}
        for k in range(11)
        for b in (1, 8)
    ]
    fig, ax = plt.subplots()
    try:
        compare_report._plot_panel(ax, rows)
        lines = [container.lines[0] for container in ax.containers]
        styles = [(line.get_linestyle(), line.get_marker()) for line in lines]
    finally:
        plt.close(fig)
    assert len(styles) == 11
    assert styles[0] == ("-", "o") and styles[10] == ("--", "s")
