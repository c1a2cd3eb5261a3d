"""Multi-worker training for `keras-homeostasis train`.

Two entry points:

- On each host of a cluster, `TF_CONFIG` set (see `docs/distributed.md`):
  `keras-homeostasis train CONFIG` trains under
  `tf.distribute.MultiWorkerMirroredStrategy` (`train_in_cluster`). The chief
  writes the run folder; every other worker writes its copy to
  `--worker-dir` (default: a temporary folder, deleted at the end).
- On one machine, `keras-homeostasis train CONFIG --workers N` starts N such
  worker processes on 127.0.0.1 (`launch_local`), waits for them, and checks
  that every worker ended with bit-identical weights, homeostatic state and
  optimizer variables (`compare_saved_models`).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

# Seconds a local run may take before its workers are stopped (a worker
# whose peer died would otherwise wait in a collective forever).
LOCAL_TIMEOUT = 24 * 3600
CHECK_FILE = "workers.json"


def cluster_task(environ=None):
    """`(task_type, task_index, cluster)` from `TF_CONFIG`, or None when unset."""
    text = (os.environ if environ is None else environ).get("TF_CONFIG")
    if not text:
        return None
    spec = json.loads(text)
    task = spec.get("task", {})
    return task.get("type", "worker"), int(task.get("index", 0)), spec["cluster"]


def is_chief(task):
    """The chief writes the run folder: task `chief`, else worker 0."""
    task_type, index, cluster = task
    if "chief" in cluster:
        return task_type == "chief"
    return task_type == "worker" and index == 0


_strategy = None


def cluster_strategy():
    """The process' `MultiWorkerMirroredStrategy`, created once, with the
    Keras 3.15 fixes of `distribute_compat` enabled.

    TensorFlow requires the strategy before any other op: call this first.
    """
    global _strategy
    if _strategy is None:
        import tensorflow as tf

        from keras_homeostasis import distribute_compat

        distribute_compat.enable_multi_worker_fit()
        _strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return _strategy


def train_in_cluster(config, run_dir=None, worker_dir=None, verbose=1, data=None):
    """`train.train` under `MultiWorkerMirroredStrategy`, chief-only outputs.

    Every worker runs the same training (Keras shards each global batch
    across workers). The chief writes `run_dir`; the others write to
    `worker_dir`, or to a temporary folder removed afterwards.
    """
    from keras_homeostasis.lab import train

    task = cluster_task()
    chief = is_chief(task)
    strategy = cluster_strategy()
    scratch = None
    if not chief and worker_dir is None:
        scratch = worker_dir = tempfile.mkdtemp(prefix="keras-homeostasis-worker-")
    try:
        with strategy.scope():
            result = train.train(
                config,
                run_dir=run_dir if chief else worker_dir,
                verbose=verbose if chief else 0,
                data=data,
            )
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    result["chief"] = chief
    result["workers"] = strategy.num_replicas_in_sync
    return result


def free_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def local_tf_configs(ports):
    """One `TF_CONFIG` per worker of a 127.0.0.1 cluster on `ports`."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return [
        json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        for i in range(len(ports))
    ]


def launch_local(train_args, workers, run_dir, log=print):
    """Runs `keras-homeostasis train` in `workers` local processes and checks them.

    Args:
        train_args: the `train` arguments every worker gets (config path and
            options), without `--run-dir`, `--workers` or `--worker-dir`.
        workers: number of worker processes (>= 2).
        run_dir: the chief's run folder.
        log: where progress lines go.

    Returns the exit status: 0 when every worker succeeded and all ended
    with identical variables, 1 otherwise.
    """
    scratch = tempfile.mkdtemp(prefix="keras-homeostasis-workers-")
    ports = free_ports(workers)
    log(f"Starting {workers} workers on 127.0.0.1 (ports {ports}).")
    dirs = [run_dir] + [os.path.join(scratch, f"worker-{i}") for i in range(1, workers)]
    procs = [
        _start(train_args, i, dirs[i], tf_config, scratch)
        for i, tf_config in enumerate(local_tf_configs(ports))
    ]
    codes = _wait(procs)
    if any(codes):
        log(f"Workers failed (exit codes {codes}); their logs are in {scratch}.")
        return 1
    check = compare_saved_models([os.path.join(d, "model.keras") for d in dirs])
    with open(os.path.join(run_dir, CHECK_FILE), "w", encoding="utf-8") as f:
        json.dump({"workers": workers, **check}, f, indent=2)
    log(describe_check(check, workers))
    if not check["identical"]:
        log(f"Worker outputs kept in {scratch}.")
        return 1
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _start(train_args, index, run_dir, tf_config, scratch):
    command = [sys.executable, "-m", "keras_homeostasis.lab.cli", "train", *train_args]
    command += ["--run-dir", run_dir] if index == 0 else ["--worker-dir", run_dir]
    if index > 0:
        command += ["--quiet"]
    env = {**os.environ, "TF_CONFIG": tf_config}
    if index == 0:
        # The chief talks to the terminal; the others to log files.
        return subprocess.Popen(command, env=env)
    log = open(os.path.join(scratch, f"worker-{index}.log"), "w")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait(procs, poll_seconds=0.5):
    """Waits for all workers; stops the others as soon as one fails."""
    deadline = time.monotonic() + LOCAL_TIMEOUT
    try:
        while time.monotonic() < deadline:
            codes = [p.poll() for p in procs]
            if all(c is not None for c in codes) or any(codes):
                break
            time.sleep(poll_seconds)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [p.wait() for p in procs]


def saved_arrays(path):
    """Every array stored in a `.keras` file, by its path in the file."""
    import zipfile

    import h5py

    arrays = {}
    with zipfile.ZipFile(path) as archive:
        with archive.open("model.weights.h5") as raw:
            with h5py.File(raw, "r") as h5:
                h5.visititems(
                    lambda name, item: (
                        arrays.__setitem__(name, item[()])
                        if isinstance(item, h5py.Dataset)
                        else None
                    )
                )
    return arrays


def compare_saved_models(paths):
    """Compares the arrays of several `.keras` files with the first one.

    Returns a dict: `identical` (bool), `arrays` (count), `max_difference`
    (largest absolute difference over all arrays) and `differing` (names).
    """
    reference = saved_arrays(paths[0])
    worst = 0.0
    differing = set()
    for path in paths[1:]:
        other = saved_arrays(path)
        differing |= set(reference) ^ set(other)
        for name in set(reference) & set(other):
            a, b = np.asarray(reference[name]), np.asarray(other[name])
            if a.shape != b.shape or not np.array_equal(a, b):
                differing.add(name)
                if a.shape == b.shape and a.size:
                    diff = np.abs(a.astype("float64") - b.astype("float64"))
                    worst = max(worst, float(np.max(diff)))
    return {
        "identical": not differing,
        "arrays": len(reference),
        "max_difference": worst,
        "differing": sorted(differing),
    }


def describe_check(check, workers):
    """One line saying whether all workers ended identical."""
    if check["identical"]:
        return (
            f"Replica check: all {workers} workers ended with bit-identical "
            f"variables ({check['arrays']} arrays: weights, homeostatic state, "
            "optimizer)."
        )
    return (
        f"Replica check FAILED: {len(check['differing'])} of {check['arrays']} "
        f"arrays differ between workers (max |difference| "
        f"{check['max_difference']:.3g}): {', '.join(check['differing'][:5])}"
    )
