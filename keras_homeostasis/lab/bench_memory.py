"""Peak memory of one `fit` per variant, each in its own child process.

A process's peak resident set size (`resource.getrusage`) only grows, so
each variant runs alone in a fresh child: it builds the model and the data,
notes its current resident size, runs one `fit` of one epoch (tracing,
compiling and the steps), then reports its peak resident size and the
growth of that peak over the size before the fit. On a GPU it also reports
the device's peak bytes in use during the fit
(`tf.config.experimental.get_memory_info`). Children run at the same time
(each has its own counters; only their speed suffers).
"""

import json
import os
import resource
import subprocess
import sys

from keras_homeostasis.lab.bench_cases import Case

RESULT_PREFIX = "BENCH-MEMORY:"
MB = 2**20


def _peak_rss_bytes():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # KB on Linux


def _current_rss_bytes():
    """Resident size now (Linux `/proc`); the peak so far elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return _peak_rss_bytes()


def _child(spec):
    """Entry point of one child: prints its measurement as JSON."""
    import tensorflow as tf

    from keras_homeostasis.lab import bench_timing

    case = Case(*spec["case"])
    model, callbacks = bench_timing.build(spec["variant"], case)
    x, y = bench_timing.random_data(case.batch, spec["steps"])
    gpu = bool(tf.config.list_physical_devices("GPU"))
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    before = _current_rss_bytes()
    model.fit(x, y, batch_size=case.batch, epochs=1, verbose=0, callbacks=callbacks)
    peak = _peak_rss_bytes()
    result = {
        "variant": spec["variant"],
        "peak_rss_mb": round(peak / MB, 1),
        "fit_rss_growth_mb": round(max(0, peak - before) / MB, 1),
        "device_peak_mb": "",
    }
    if gpu:
        info = tf.config.experimental.get_memory_info("GPU:0")
        result["device_peak_mb"] = round(info["peak"] / MB, 1)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def _start(case, variant, steps, gpus):
    spec = {"case": list(case), "variant": variant, "steps": steps}
    command = [sys.executable, "-m", __name__, json.dumps(spec)]
    env = {**os.environ, "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _result(variant, child):
    out, err = child.communicate()
    if child.returncode != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the memory child of {variant} failed: {last}")
    for line in out.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"the memory child of {variant} printed no result")


def measure_memory(case, variants, steps, gpus=False):
    """One row per variant: `case` fields, `variant`, `peak_rss_mb`,
    `fit_rss_growth_mb`, `device_peak_mb` (empty without a GPU) and
    `growth_vs_none_mb` (the fit's growth minus that of `none`)."""
    children = {v: _start(case, v, steps, gpus) for v in variants}
    found = {v: _result(v, child) for v, child in children.items()}
    base = found["none"]["fit_rss_growth_mb"]
    return [
        {
            **case._asdict(),
            **found[v],
            "growth_vs_none_mb": round(found[v]["fit_rss_growth_mb"] - base, 1),
        }
        for v in variants
    ]


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
