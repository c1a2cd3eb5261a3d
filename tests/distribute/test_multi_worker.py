"""`fit` under MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1.

Each worker runs `multi_worker_fit.py` on its own data and writes all its
variables; the test compares the two files. The negative control (no
all-reduce of the statistics) shows the comparison can fail.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_homeostasis import distribute_compat
from keras_homeostasis.lab.multi_worker import free_ports

WORKER = os.path.join(os.path.dirname(__file__), "multi_worker_fit.py")
TIMEOUT = 240

pytestmark = [pytest.mark.slow, pytest.mark.multi_device]


def run_workers(tmp_path, *flags, workers=2):
    """Starts the workers, waits for all; returns `(return codes, logs, outs)`."""
    ports = ",".join(str(p) for p in free_ports(workers))
    outs = [tmp_path / f"worker{i}.npz" for i in range(workers)]
    logs = [tmp_path / f"worker{i}.log" for i in range(workers)]
    procs = []
    for i in range(workers):
        with open(logs[i], "w") as log:
            command = [sys.executable, WORKER, ports, str(i), str(outs[i]), *flags]
            procs.append(subprocess.Popen(command, stdout=log, stderr=log))
    codes = []
    try:
        for p in procs:
            codes.append(p.wait(timeout=TIMEOUT))
    finally:
        # A worker whose peer died waits forever in a collective: end it.
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return codes, [log.read_text() for log in logs], outs


def load_all(outs):
    return [dict(np.load(out)) for out in outs]


def assert_identical(first, second):
    assert sorted(first) == sorted(second)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def assert_trained_and_scaled(arrays):
    steps = [v for k, v in arrays.items() if k.endswith("/steps")]
    factors = [v for k, v in arrays.items() if k.endswith("/factor")]
    assert steps and all(int(s) == 6 for s in steps)  # 2 epochs x 3 steps
    # The scaling acted, so equality is not that of untouched variables.
    assert any(np.any(np.abs(f - 1.0) > 1e-4) for f in factors)


def test_scaling_callback_workers_end_identical(tmp_path):
    codes, logs, outs = run_workers(tmp_path)
    assert codes == [0, 0], logs
    first, second = load_all(outs)
    assert_trained_and_scaled(first)
    assert_identical(first, second)


def test_homeostatic_layers_workers_end_identical(tmp_path):
    codes, logs, outs = run_workers(tmp_path, "--layers")
    assert codes == [0, 0], logs
    first, second = load_all(outs)
    assert_trained_and_scaled(first)
    assert_identical(first, second)


def test_without_all_reduce_workers_drift_apart(tmp_path):
    codes, logs, outs = run_workers(tmp_path, "--no-all-reduce")
    assert codes == [0, 0], logs
    first, second = load_all(outs)
    assert not np.array_equal(
        first["state/hidden0/activity"], second["state/hidden0/activity"]
    )
    assert not np.array_equal(
        first["model/sequential/hidden0/kernel"],
        second["model/sequential/hidden0/kernel"],
    )


@pytest.mark.skipif(
    not distribute_compat.needs_patch(),
    reason="the fixes apply to Keras 3.11-3.15 only",
)
def test_keras_alone_fails_under_multi_worker(tmp_path):
    # If this starts passing `fit`, Keras fixed keras-team/keras#20585 and the
    # compat module can be retired for this version.
    codes, logs, _ = run_workers(tmp_path, "--no-compat")
    assert codes[0] != 0
    assert "PerReplica" in logs[0]
