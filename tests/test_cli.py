"""Tests of the `keras-homeostasis` command line (`train` and `compare`)."""

import csv
import json
import pathlib

import keras
import numpy as np
import pytest
import yaml

from keras_homeostasis.lab import cli
from keras_homeostasis.lab import compare
from keras_homeostasis.lab import compare_report
from keras_homeostasis.lab import config as config_lib
from keras_homeostasis.lab import train

# keras.backend.clear_session() collects garbage at every run.
pytestmark = pytest.mark.usefixtures("own_heap")

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def test_train_quickstart_writes_every_run_file(tmp_path, capsys):
    run_dir = tmp_path / "run"
    status = cli.main(
        ["train", str(QUICKSTART), "--epochs", "1", "--run-dir", str(run_dir)]
    )
    assert status == 0
    for name in train.RUN_FILES:
        assert (run_dir / name).exists(), name
    assert list((run_dir / "logs" / "train").glob("events.out.tfevents.*"))
    assert list((run_dir / "logs" / "validation").glob("events.out.tfevents.*"))
    assert list((run_dir / "logs" / "homeostasis").glob("events.out.tfevents.*"))
    with open(run_dir / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert len(history) == 1 and "val_accuracy" in history[0]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["training"]["epochs"] == 1
    assert saved["model"]["normalization"] == "held_centered_scaling"
    usage = json.loads((run_dir / "usage.json").read_text())
    assert set(usage["layers"]) == {"hidden_1", "hidden_2"}
    assert "hidden_1" in (run_dir / "usage.md").read_text()
    assert (run_dir / "usage.png").read_bytes()[:4] == b"\x89PNG"
    model = keras.saving.load_model(run_dir / "model.keras")
    assert model.output_shape == (None, 10)
    assert "Test accuracy" in capsys.readouterr().out


def _tiny_compare_config(tmp_path, methods=("none", "batchnorm")):
    path = tmp_path / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"dataset": "digits", "limit": 200, "batch_size": 50},
                "model": {"hidden": [16, 16]},
                "training": {"epochs": 1},
                "compare": {
                    "methods": list(methods),
                    "optimizers": ["adam"],
                    "seeds": [0],
                    "accuracy_threshold": 0.05,
                },
            }
        )
    )
    return path


def test_compare_writes_csv_and_markdown_then_resumes(tmp_path, capsys):
    path = _tiny_compare_config(tmp_path)
    out = tmp_path / "out"
    assert cli.main(["compare", str(path), "--out", str(out)]) == 0
    with open(out / "results.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    expected = list(compare.KEY_COLUMNS) + list(compare.RESULT_COLUMNS)
    expected += [f"hidden_{k}_{m}" for k in (1, 2) for m in ("entropy", "cv", "dead")]
    assert reader.fieldnames == expected
    assert [r["method"] for r in rows] == ["none", "batchnorm"]
    for row in rows:
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0
        assert 0.0 < float(row["hidden_1_entropy"]) <= 1.0
        assert row["epochs_to_threshold"] == "1" and row["diverged"] == "0"
        assert float(row["step_ms"]) > 0
    markdown = (out / "results.md").read_text()
    assert "## mlp, adam" in markdown
    assert "| none | 1 |" in markdown and "| batchnorm | 1 |" in markdown
    assert "hidden_2 dead" in markdown and "1.00x" in markdown
    assert "[2/2]" in capsys.readouterr().out
    # A rerun finds both rows and trains nothing.
    assert cli.main(["compare", str(path), "--out", str(out)]) == 0
    assert "Resuming: 2 of 2" in capsys.readouterr().out
    assert len((out / "results.csv").read_text().splitlines()) == 3


def test_an_interrupted_comparison_keeps_finished_runs_and_resumes(tmp_path):
    config = config_lib.load_config(str(_tiny_compare_config(tmp_path)))
    out = str(tmp_path / "out")

    def interrupt(line):
        raise KeyboardInterrupt  # Ctrl-C right after the first run.

    with pytest.raises(KeyboardInterrupt):
        compare.run_comparison(config, out_dir=out, log=interrupt)
    with open(tmp_path / "out" / "results.csv") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["none"]
    lines = []
    rows = compare.run_comparison(config, out_dir=out, log=lines.append)
    assert lines[0].startswith("Resuming: 1 of 2")
    assert [r["method"] for r in rows] == ["none", "batchnorm"]


def test_compare_refuses_a_results_file_of_another_comparison(tmp_path):
    config = config_lib.load_config(str(_tiny_compare_config(tmp_path)))
    csv_path = tmp_path / "results.csv"
    csv_path.write_text("dataset,method\ndigits,none\n")
    with pytest.raises(ValueError, match="--out"):
        compare.run_comparison(config, out_dir=str(tmp_path), log=lambda s: None)


def test_markdown_aggregates_seeds_divergence_and_step_time():
    config = config_lib.validate_config({"compare": {"accuracy_threshold": 0.5}})
    rows = []
    for method, seed, accuracy, step, reached, diverged in [
        ("none", 0, "0.90", "2.0", "1", "0"),
        ("none", 1, "0.80", "2.0", "2", "0"),
        ("scaling", 0, "0.10", "3.0", "", "1"),
    ]:
        rows.append(
            {
                "architecture": "mlp",
                "optimizer": "adam",
                "method": method,
                "seed": str(seed),
                "test_accuracy": accuracy,
                "step_ms": step,
                "epochs_to_threshold": reached,
                "diverged": diverged,
                "hidden_1_entropy": "0.9",
                "hidden_1_cv": "0.5",
                "hidden_1_dead": "0.0",
            }
        )
    text = compare_report.markdown(rows, config)
    assert "| none | 2 | 0.8500 ± 0.0707 |" in text
    assert "1.5 (2/2) | 0/2 | 1.00x |" in text
    assert "never (0/1) | 1/1 | 1.50x |" in text


def test_bad_config_exits_with_an_error_naming_the_key(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("training:\n  epoch: 3\n")
    assert cli.main(["train", str(path)]) == cli.BAD_INPUT
    assert "`training.epoch`" in capsys.readouterr().err


def test_missing_dataset_file_exits_cleanly(tmp_path, capsys):
    path = tmp_path / "missing.yaml"
    path.write_text("data:\n  dataset: nowhere/mnist.npz\n")
    assert cli.main(["train", str(path), "--run-dir", str(tmp_path / "r")]) == 2
    assert "mnist.npz" in capsys.readouterr().err


def test_bad_flag_values_are_rejected():
    with pytest.raises(SystemExit):
        cli.main(["train", str(QUICKSTART), "--epochs", "0"])
    with pytest.raises(SystemExit):
        cli.main(["compare", str(QUICKSTART), "--seeds", "-1"])


def test_scaling_callback_only_for_the_scaling_method():
    config = config_lib.validate_config({"model": {"normalization": "scaling"}})
    assert train.scaling_callbacks(config, "none") == []
    (callback,) = train.scaling_callbacks(config, "scaling")
    assert callback.settings["rate"] == config["scaling"]["rate"]
    assert np.isclose(
        callback.settings["max_step"], config_lib.SCALING_DEFAULTS["max_step"]
    )


def test_train_refuses_a_run_folder_that_is_not_empty(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model.keras").write_text("an earlier run")
    argv = ["train", str(QUICKSTART), "--epochs", "1", "--run-dir", str(run_dir)]
    assert cli.main(argv) == cli.BAD_INPUT
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "--run-dir" in err and "--overwrite" in err and "Traceback" not in err
    assert (run_dir / "model.keras").read_text() == "an earlier run"


def test_train_writes_the_dashboard_for_an_unscaled_run(tmp_path):
    config = config_lib.load_config(QUICKSTART, overrides={"training": {"epochs": 1}})
    config["model"]["normalization"] = "none"
    callbacks = train.homeostasis_callbacks(
        config, "none", str(tmp_path), np.ones((4, 64))
    )
    assert [type(c).__name__ for c in callbacks] == ["HomeostasisLogger"]
    assert callbacks[0].log_dir == str(tmp_path / "logs" / "homeostasis")
