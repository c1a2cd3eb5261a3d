"""`keras-homeostasis train CONFIG --workers N` and the multi-worker helpers."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import pytest
import yaml

from keras_homeostasis.lab import cli
from keras_homeostasis.lab import multi_worker
from keras_homeostasis.lab import train

ROOT = pathlib.Path(__file__).resolve().parents[2]


def tiny_config(tmp_path, normalization="scaling", steps_per_execution=1):
    path = tmp_path / "tiny.yaml"
    training_section = {"epochs": 2, "seed": 0}
    training_section["steps_per_execution"] = steps_per_execution
    config = {
        "data": {"dataset": "digits", "limit": 256, "batch_size": 32},
        "model": {"architecture": "mlp", "hidden": [24, 16]},
        "training": training_section,
        "scaling": {"warmup": 2},
        "output": {"run_dir": str(tmp_path / "default_run")},
    }
    config["model"]["normalization"] = normalization
    path.write_text(yaml.safe_dump(config))
    return path


def train_workers(config, run_dir):
    command = [sys.executable, "-m", "keras_homeostasis.lab.cli", "train"]
    command += [str(config), "--workers", "2", "--quiet", "--run-dir", str(run_dir)]
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
@pytest.mark.multi_device
def test_two_local_workers_end_identical(tmp_path):
    run_dir = tmp_path / "run"
    done = train_workers(tiny_config(tmp_path), run_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 2 workers ended with bit-identical variables" in done.stdout
    check = json.loads((run_dir / "workers.json").read_text())
    assert check["identical"] and check["workers"] == 2
    # Only the chief wrote the run folder; it holds every run file.
    for name in train.RUN_FILES:
        assert (run_dir / name).exists(), name
    arrays = multi_worker.saved_arrays(run_dir / "model.keras")
    assert check["arrays"] == len(arrays)
    assert any("homeostasis" in name for name in arrays)


@pytest.mark.slow
@pytest.mark.multi_device
def test_failing_workers_are_stopped_and_reported(tmp_path):
    # steps_per_execution > 1 with several replicas: the callback refuses it
    # in every worker (keras-team/keras#19246); the launcher must not hang.
    done = train_workers(tiny_config(tmp_path, steps_per_execution=2), tmp_path / "r")
    assert done.returncode == 1
    assert "Workers failed" in done.stdout
    assert "keras-team/keras#19246" in done.stderr
    assert not (tmp_path / "r" / "workers.json").exists()


def save_tiny(path, seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.save(path)


def test_compare_saved_models_sees_a_difference(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        save_tiny(tmp_path / f"{name}.keras", seed)
    same = multi_worker.compare_saved_models(
        [tmp_path / "a.keras", tmp_path / "b.keras"]
    )
    assert same["identical"] and same["arrays"] == 2
    other = multi_worker.compare_saved_models(
        [tmp_path / "a.keras", tmp_path / "b.keras", tmp_path / "c.keras"]
    )
    assert not other["identical"] and other["max_difference"] > 0
    assert "FAILED" in multi_worker.describe_check(other, 3)


def test_chief_is_worker_zero_unless_a_chief_task_exists():
    configs = [json.loads(c) for c in multi_worker.local_tf_configs([1111, 2222])]
    assert configs[1]["cluster"]["worker"] == ["127.0.0.1:1111", "127.0.0.1:2222"]
    tasks = [multi_worker.cluster_task({"TF_CONFIG": json.dumps(c)}) for c in configs]
    assert [multi_worker.is_chief(t) for t in tasks] == [True, False]
    cluster = {"chief": ["h0:1"], "worker": ["h1:1"]}
    chief = {"cluster": cluster, "task": {"type": "chief", "index": 0}}
    worker = {"cluster": cluster, "task": {"type": "worker", "index": 0}}
    assert multi_worker.is_chief(
        multi_worker.cluster_task({"TF_CONFIG": json.dumps(chief)})
    )
    assert not multi_worker.is_chief(
        multi_worker.cluster_task({"TF_CONFIG": json.dumps(worker)})
    )
    assert multi_worker.cluster_task({}) is None


def test_workers_refuse_an_existing_tf_config(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {}, "task": {}}))
    status = cli.main(["train", str(tiny_config(tmp_path)), "--workers", "2"])
    assert status == cli.BAD_INPUT
    assert "unset TF_CONFIG" in capsys.readouterr().err
