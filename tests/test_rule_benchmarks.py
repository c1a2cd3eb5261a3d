"""The rule's development benchmarks (docs/design.md tables), on small settings."""

import argparse
import csv
import json
import os
import pathlib

import keras
import numpy as np
import pytest
from homeostasis_testing import load_script

import keras_homeostasis as kh
from keras_homeostasis.lab import models

# keras.backend.clear_session() collects garbage at every run.
pytestmark = pytest.mark.usefixtures("own_heap")

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
rule_variants = load_script(BENCHMARKS / "rule_variants.py")
online_variants = load_script(BENCHMARKS / "online_variants.py")
dense_balance = load_script(BENCHMARKS / "dense_balance.py")
continual_seeds = load_script(BENCHMARKS / "continual_seeds.py")
norm_between_steps = load_script(BENCHMARKS / "norm_between_steps.py")
centered_inputs = load_script(BENCHMARKS / "centered_inputs.py")
continual_plots = load_script(BENCHMARKS / "continual_plots.py")
profile_step = load_script(BENCHMARKS / "profile_step.py")
xla_cpu_handover = load_script(BENCHMARKS / "xla_cpu_handover.py")
balance_gain = load_script(BENCHMARKS / "balance_gain.py")
silent_units = load_script(BENCHMARKS / "silent_units.py")
large_rate_trace = load_script(BENCHMARKS / "large_rate_trace.py")


def _digits(n, features=784, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, features)).astype("float32"), rng.integers(0, 10, n)


def _write_lines(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_rule_variants_runs_and_its_table_renders_the_rows(tmp_path):
    data = (_digits(256), _digits(128, seed=1))
    rows = [
        rule_variants.run(data, "sgd", method, settings, epochs=1, seed=0)
        for method, settings in [("none", {}), ("scaling", {"anchor": 0.1})]
    ]
    assert rows[1]["settings"] == {"anchor": 0.1}
    assert len(rows[1]["usage_entropy"]) == len(rows[1]["dead"]) == 2
    table = rule_variants.table(_write_lines(tmp_path / "runs.jsonl", rows))
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| sgd | none | `-` |")
    assert '`{"anchor": 0.1}`' in lines[3]
    assert f"{100 * rows[1]['test_accuracy']:.2f}%" in lines[3]


def test_online_variants_yields_a_row_per_task_and_its_table_joins_them(tmp_path):
    images, labels = _digits(400)
    args = argparse.Namespace(seed=0, width=8, tasks=2, per_task=100, lr=0.03)
    rows = [
        {"method": "scaling", "settings": {}, **row}
        for row in online_variants.run(images, labels, {}, args)
    ]
    assert [row["task"] for row in rows] == [0, 1]
    assert all(len(row["dead"]) == 3 for row in rows)
    table = online_variants.table(_write_lines(tmp_path / "runs.jsonl", rows))
    last = table.splitlines()[-1]
    accuracies = " ".join(f"{row['online_accuracy']:.3f}" for row in rows)
    assert last.startswith(f"| scaling | `{{}}` | {accuracies} |")


def test_dense_balance_reports_the_traces_spreads_and_its_table_renders(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((96, 28, 28, 1)).astype("float32")
    data = (
        (images[:64], rng.integers(0, 10, 64)),
        (images[64:], rng.integers(0, 10, 32)),
    )
    # Twelve one-step epochs: the rule acts after its ten-step warm-up.
    row = dense_balance.run(data, {"momentum": 0.9}, epochs=12, seed=0)
    assert list(row["usage_entropy"]) == list(row["traces"])
    assert len(row["traces"]) == 3
    dense = row["traces"]["hidden_3"]
    assert 0.0 <= dense["firing_mean"] <= 1.0 and dense["spread_cv"] >= 0.0
    assert set(row["measured"]) == set(dense)
    table = dense_balance.table(_write_lines(tmp_path / "runs.jsonl", [row]))
    last = table.splitlines()[-1]
    assert last.startswith(
        f'| `{{"momentum": 0.9}}` | {100 * row["test_accuracy"]:.2f}% |'
    )


def test_dense_balance_measures_the_dense_layer_under_its_current_weights():
    rng = np.random.default_rng(1)
    images = rng.random((64, 28, 28, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    model = models.build_model("cnn", "none", (28, 28, 1), 10)
    measured = dense_balance.measured_spreads(model, "hidden_3", images)
    # The firing rate is the share of the layer's positive outputs, here
    # computed through the model instead of from its input and kernel.
    outputs = keras.Model(model.inputs[0], model.get_layer("hidden_3").output)
    firing = (outputs.predict(images, verbose=0) > 0).mean(axis=0)
    assert measured["firing_mean"] == pytest.approx(firing.mean(), abs=1e-3)
    assert measured["firing_std"] == pytest.approx(firing.std(), abs=1e-3)
    assert measured["spread_cv"] > 0.0 and measured["offset_std"] > 0.0


def _continual_csv(path, accuracy_by_method):
    fields = ["method", "task", "online_accuracy", "hidden_1_dead", "hidden_2_dead"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for method, values in accuracy_by_method.items():
            for task, value in enumerate(values, start=1):
                writer.writerow(
                    {
                        "method": method,
                        "task": task,
                        "online_accuracy": value,
                        "hidden_1_dead": 0 if method == "flat" else 10,
                        "hidden_2_dead": 0 if method == "flat" else 30,
                    }
                )
    return str(path)


def test_continual_seeds_tells_a_decline_from_its_noise_floor(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for seed in range(3):
        flat = 0.75 + rng.normal(0.0, 0.01, 20)
        falling = 0.8 - 0.01 * np.arange(20) + rng.normal(0.0, 0.01, 20)
        paths.append(
            _continual_csv(
                tmp_path / f"s{seed}.csv", {"flat": flat, "falling": falling}
            )
        )
    flat = continual_seeds.measures(
        continual_seeds.accuracies(continual_seeds.read(paths[0]), "flat")
    )
    # A flat run's best 2-task window sits ~1.2 task deviations above its last.
    assert 0.8 < flat["floor"] < 1.8
    assert abs(flat["trend"]) < 1.0
    lines = continual_seeds.table(paths).splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| flat", "| falling"]
    cells = lines[3].split(" | ")
    assert cells[1] == "3"
    assert float(cells[5].split(" ± ")[0]) > 15  # decline in points
    assert float(cells[8].split(" ± ")[0]) == pytest.approx(-10.0, abs=1.5)
    assert cells[9].startswith("20.0")


def test_online_lr_settings_runs_each_variant_in_its_folder_and_tabulates(tmp_path):
    online_lr_settings = load_script(BENCHMARKS / "online_lr_settings.py")
    config_path = BENCHMARKS.parent / online_lr_settings.CONFIG
    small = {"data": {"dataset": "digits"}, "compare": {"train_examples": 32}}
    results = []
    for name in ("defaults", "anchor0"):
        config = online_lr_settings.variant_config(
            config_path, name, 0.01, [0], str(tmp_path), overrides=small
        )
        assert config["compare"]["methods"] == ["scaling"]
        assert config["compare"]["learning_rates"] == [0.01]
        rows = online_lr_settings.compare.run_comparison(config, log=lambda _: None)
        assert (tmp_path / name / "results.csv").exists()
        results.append((name, online_lr_settings.summary(rows)))
    assert results[1][1]["runs"] == 1
    anchor = online_lr_settings.variant_config(
        config_path, "anchor0", 0.01, [0], str(tmp_path), overrides=small
    )["scaling"]["anchor"]
    assert anchor == 0.0
    lines = online_lr_settings.table(results).splitlines()
    assert lines[2].startswith("| defaults | 1 | ")
    assert lines[3].startswith("| `anchor: 0` | 1 | ")
    # One seed: its accuracy alone, no spread (as `keras-homeostasis compare`).
    accuracy = float(results[1][1]["accuracy"])
    assert f"| {accuracy:.3f} |" in lines[3]


def test_norm_between_steps_holds_each_units_norm_after_every_step():
    train, test = _digits(64), _digits(32, seed=1)
    row = norm_between_steps.run((train, test), "held_x2", 0, 0.01, hidden=(8, 8))
    assert row["variant"] == "held_x2" and len(row["dead"]) == 2
    assert 0.0 <= row["accuracy"] <= 1.0
    fixed = norm_between_steps.run(
        (train, test), "weightnorm_fixed_gain", 0, 0.01, hidden=(8,)
    )
    assert len(fixed["dead"]) == len(fixed["norms"]) == 1
    held = norm_between_steps.HeldNorm(np.array([2.0, 3.0], "float32"))
    w = np.random.default_rng(0).normal(size=(5, 2)).astype("float32")
    np.testing.assert_allclose(np.linalg.norm(held(w), axis=0), [2.0, 3.0], rtol=1e-6)


def test_centered_inputs_runs_every_method_and_its_table_renders(tmp_path):
    images, labels = _digits(256)
    data = (
        (images.reshape(-1, 28, 28), labels),
        (images[:64].reshape(-1, 28, 28), labels[:64]),
    )
    rows = [
        centered_inputs.run(data, "mlp", method, "sgd", 0, 1, 32)
        for method in centered_inputs.METHODS
    ]
    assert [row["method"] for row in rows] == list(centered_inputs.METHODS)
    assert all(list(row["usage_entropy"]) == ["hidden_1", "hidden_2"] for row in rows)
    lines = centered_inputs.table(_write_lines(tmp_path / "runs.jsonl", rows))
    lines = lines.splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[-1].startswith(
        f"| mlp | sgd (default) | 32 | {rows[-1]['method']} | 1 |"
    )
    assert f"{100 * rows[-1]['test_accuracy']:.2f}%" in lines[-1]


def test_continual_plots_draw_several_runs_with_their_labels(tmp_path):
    header = ["method", "task", "online_accuracy", "hidden_1_dead", "hidden_1_erank"]
    paths = []
    for k, method in enumerate(["backprop", "scale_invariant_layers"]):
        path = tmp_path / f"run{k}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for task in (1, 2, 3):
                writer.writerow([method, task, 0.5 + 0.1 * k, 0.0, 10.0 + task])
        paths.append(str(path))
    specs = [paths[0], paths[1] + "=scale_invariant_layers, relaxed"]
    methods = {
        row["method"] for spec in specs for row in continual_plots.labelled_rows(spec)
    }
    assert methods == {"backprop", "scale_invariant_layers, relaxed"}
    drawn = continual_plots.draw(specs, str(tmp_path / "plots"), "long_")
    assert sorted(os.path.basename(p) for p in drawn) == [
        "long_dead_units.png",
        "long_effective_rank.png",
        "long_online_accuracy.png",
    ]
    assert all(os.path.getsize(p) > 1000 for p in drawn)


def test_profile_step_counts_the_kernels_of_a_steps_per_execution_loop(
    tmp_path, monkeypatch, capsys
):
    # Inside the loop every kernel's name starts with `while/`.
    name = "while/body/_1/gradient_tape/dense/MatMul:_MklMatMul"
    assert profile_step.counted(name, xla=False)
    assert not profile_step.counted("ExecutorState::Process", xla=False)
    assert not profile_step.counted("ThreadpoolListener::Record", xla=False)
    assert profile_step.counted("multiply_fusion.2", xla=True)
    assert not profile_step.counted("while/body", xla=True)
    argv = ["profile_step.py", "centered_invariant", "--batch", "4", "--width", "8"]
    argv += ["--steps", "20", "--steps-per-execution", "10", "--out", str(tmp_path)]
    monkeypatch.setattr("sys.argv", argv)
    profile_step.main()
    out = capsys.readouterr().out
    kernels = int(out.split(" kernels per step in all")[0].split("\n")[-1])
    assert kernels > 30  # 3 layers' matmuls, centering, the rule and SGD
    assert "MatMul" in out


def test_profile_step_builds_the_depth_asked_for(monkeypatch):
    from keras_homeostasis.layers import HomeostaticDense

    monkeypatch.setattr("sys.argv", ["profile_step.py", "layers", "--depth", "5"])
    model, callbacks = profile_step.build(profile_step.parse_args())
    homeostatic = [
        layer for layer in model.layers if isinstance(layer, HomeostaticDense)
    ]
    assert len(homeostatic) == 5 and not callbacks
    assert len(model.layers) == 6  # and the head


def test_profile_step_counts_what_xla_hands_to_its_worker_threads():
    events = [
        ("tf_Compute/1", "multiply_fusion.2", 3.0),
        ("tf_Compute/1", "BlockUntilReady", 40.0),
        ("tf_numa_-1_Eigen/7", "copy.3", 1.0),
        ("tf_numa_-1_Eigen/7", "ThunkExecutor::Execute", 9.0),
        ("tf_numa_-1_Eigen/8", "wrapped_reduce.1", 2.0),
        ("python", "BlockUntilReady", 99.0),
        ("tf_Compute/1", "while/body/dense/MatMul:_MklMatMul", 5.0),
    ]
    assert profile_step.offloaded(events) == (2, 40.0)
    totals = profile_step.kernel_times(events, xla=True)
    assert sorted(totals) == ["copy.3", "multiply_fusion.2", "wrapped_reduce.1"]
    # Without XLA only TensorFlow's own kernels count, by their type.
    plain = profile_step.kernel_times(events, xla=False)
    assert dict(plain) == {"_MklMatMul": [5.0, 1]}


def test_xla_cpu_handover_times_the_online_mlp_with_independent_writes():
    times = xla_cpu_handover.measure([0, 3], steps=12, rounds=2, progress=str)
    assert list(times) == [0, 3]
    assert all(len(rows) == 2 for rows in times.values())
    assert all(cpu > 0 and wall > 0 for rows in times.values() for cpu, wall in rows)
    lines = xla_cpu_handover.table(times)
    assert lines[2].startswith("| 0 |") and lines[2].endswith("| 1.00 |")
    assert lines[3].startswith("| 3 |")
    # Each write runs once per training step: a fit and 2 rounds of 12.
    model = xla_cpu_handover.build(3)
    x, y = _digits(12)
    model.fit(x, y, batch_size=1, verbose=0)
    counters = model.layers[-2].counters
    assert [float(c.numpy()) for c in counters] == [12.0, 12.0, 12.0]


def test_balance_gain_measures_a_run_against_another_runs_none(tmp_path):
    header = ["optimizer", "method", "seed", "hidden_1_entropy", "hidden_2_entropy"]
    runs = {
        "base.csv": [["sgd", "none", 0, 0.9, 0.8], ["sgd", "batchnorm", 0, 0.99, 0.98]],
        "more.csv": [["sgd", "centered_layers", 0, 0.95, 0.9]],
    }
    for name, rows in runs.items():
        with open(tmp_path / name, "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
    lines = balance_gain.table(*(str(tmp_path / name) for name in runs))
    # (0.95 - 0.9) / 0.1 and (0.9 - 0.8) / 0.2: half of each gap.
    assert "| sgd | centered_layers | 0.950 | 0.900 | 50% |" in lines
    assert "| sgd | batchnorm | 0.990 | 0.980 | 90% |" in lines
    alone = balance_gain.table(str(tmp_path / "more.csv"))
    assert "| sgd | centered_layers | 0.950 | 0.900 | - |" in alone


def test_silent_units_preactivation_is_what_each_layer_rectifies():
    keras.utils.set_random_seed(0)
    model = models.build_model("cnn", "none", (12, 12, 1), 10)
    images = np.random.default_rng(0).random((4, 12, 12, 1)).astype("float32")
    for name in ("hidden_1", "hidden_2", "hidden_3"):
        layer = model.get_layer(name)
        z = silent_units.preactivation(model, layer, images)
        outputs = keras.Model(model.inputs[0], layer.output)(images)
        expected = np.asarray(outputs).reshape(z.shape)
        np.testing.assert_allclose(np.maximum(z, 0.0), expected, atol=1e-5)


@pytest.mark.parametrize("method", ["scaling", "centered_scaling"])
def test_silent_units_reports_every_scaled_layer_at_each_checkpoint(tmp_path, method):
    rng = np.random.default_rng(0)
    x = rng.random((256, 12, 12, 1)).astype("float32")
    data = ((x, rng.integers(0, 10, 256)), (x[:64], rng.integers(0, 10, 64)))
    rows = list(silent_units.run(data, method, 0.05, checkpoints=(1, 3)))
    assert [row["step"] for row in rows] == [1, 3]
    for row in rows:
        assert set(row["layers"]) == {"hidden_1", "hidden_2", "hidden_3"}
        for found in row["layers"].values():
            assert 0.0 <= found["silent"] <= 1.0 and 0.0 <= found["dead"] <= 1.0
            assert np.isfinite(found["live_traced_offset"])
    table = silent_units.table(_write_lines(tmp_path / "runs.jsonl", rows))
    lines = table.splitlines()
    assert len(lines) == 2 + 2 * 3
    assert lines[2].startswith(f"| {method} | 0.05 | 1 | ")


def test_silent_units_reads_the_rule_and_the_batch_for_a_silenced_layer():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((64, 12, 12, 1)).astype("float32")
    model = models.build_model("cnn", "none", (12, 12, 1), 10)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    callback = kh.SynapticScalingCallback(center_inputs=True)
    model.fit(x, np.zeros(64), batch_size=16, callbacks=[callback], verbose=0)
    layer, state = callback.bindings[0]
    layer.bias.assign(np.full(layer.bias.shape, -100.0, "float32"))
    row = silent_units.layer_row(callback, model, layer, state, x, dead=1.0)
    assert row["silent"] == 1.0 and row["batch_max"] <= 0.0
    # The centered bias (bias + x_bar . w) is what the rule reads.
    traced, _ = silent_units.rule_offsets(callback, layer, state)
    assert row["traced_offset"] == round(float(traced.mean()), 2) < -10
    assert row["live_traced_offset"] is None


def _norms(method, x, y, layers=None):
    rows = large_rate_trace.trace(
        method, x, y, "mlp", steps=3, layers=layers, verbose=False
    )
    assert [row["step"] for row in rows] == [1, 2, 3]
    assert "output |k|" in large_rate_trace.format_row(rows[-1])
    return {
        name: (rows[0]["layers"][name]["kernel_norm"], layer["kernel_norm"])
        for name, layer in rows[-1]["layers"].items()
    }


def test_large_rate_trace_shows_held_kernels_keeping_their_norms():
    x, y = _digits(384)
    held = _norms("held_centered_scaling", x, y)
    plain = _norms("centered_scaling", x, y)
    assert list(held) == ["hidden_1", "hidden_2", "output"]
    for name in ["hidden_1", "hidden_2"]:
        np.testing.assert_allclose(*held[name], rtol=1e-6)
        assert abs(plain[name][1] / plain[name][0] - 1) > 1e-5, name
    # The output layer is left to the optimizer: its norm moves.
    assert held["output"][0] != held["output"][1]
    # Named in `layers=`, the output layer is held too.
    everything = _norms("held_centered_scaling", x, y, ["hidden_1", "output"])
    np.testing.assert_allclose(*everything["output"], rtol=1e-6)
    assert everything["hidden_2"][0] != everything["hidden_2"][1]
    # A wrapped layer is traced with the kernel it computes with.
    assert list(_norms("weightnorm", x, y)) == ["hidden_1", "hidden_2", "output"]


ab_compare = load_script(BENCHMARKS / "ab_compare.py")
REPO = BENCHMARKS.parent


def test_ab_compare_times_two_trees_round_by_round(capsys):
    # The same tree twice, two short rounds: each worker builds the online
    # case in its own process and answers a ratio per round.
    ab_compare.main(
        [str(REPO), str(REPO), "--variant", "scaling", "--rounds", "2"]
        + ["--epochs", "2", "--steps", "250"]
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "scaling, online, 2 rounds of 2 epochs"
    rows = {line.split(" | ")[0]: line for line in lines if line.startswith("| ")}
    for clock in ("cpu", "wall"):
        cells = rows[f"| {clock}"].strip("| ").split(" | ")
        before, after = float(cells[1]), float(cells[2])
        assert 0.5 < before < 5.0 and 0.5 < after < 5.0
        assert len(cells[3].split(", ")) == 3


def test_ab_compare_names_a_tree_without_the_package(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ab_compare.parse_args([str(REPO), str(tmp_path)])
    assert str(tmp_path) in capsys.readouterr().err
