"""`benchmarks/gpu_check.sh` and the replica check it runs: they only run on
GPU machines, so check here that they still fit the bench they call."""

import pathlib
import subprocess

import numpy as np
from homeostasis_testing import load_script

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


def load_replica_check():
    return load_script(BENCHMARKS / "gpu_replica_check.py")


def test_replica_check_builds_the_bench_model_on_its_data():
    check = load_replica_check()
    x, y = check.data(256)
    assert x.shape == (256, 28, 28, 1) and y.shape == (256,)
    model, callbacks = check.model_of("scaling")
    assert model.input_shape == (None, 28, 28, 1)
    assert len(callbacks) == 1
    probabilities = np.asarray(model(x[:2]))
    assert probabilities.shape == (2, 10)


def test_gpu_check_script_parses_and_runs_the_bench():
    script = BENCHMARKS / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "python -m keras_homeostasis.lab.cli bench --quick --gpus" in text
