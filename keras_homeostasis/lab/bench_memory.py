"""Peak memory of one `fit` per variant, each in its own child process.

Each variant runs alone in a fresh child: it builds the model and the data,
notes its current resident size, resets the kernel's peak resident size
counter (Linux: `/proc/self/clear_refs`), runs one `fit` of one epoch
(tracing, compiling and the steps), then reports the peak resident size
during that fit (`VmHWM`) and its growth over the size before. Where the
counter cannot be reset (not Linux), the peak is that of the whole process
(`resource.getrusage`), marked `peak_scope=process`. On a GPU it also
reports the device's peak bytes in use during the fit
(`tf.config.experimental.get_memory_info`). Children run at the same time:
each has its own counters, only their speed suffers.
"""

import json
import os
import resource
import subprocess
import sys

from keras_homeostasis.lab.bench_cases import Case

RESULT_PREFIX = "BENCH-MEMORY:"
MB = 2**20


def _status_bytes(field):
    """`VmRSS` or `VmHWM` of this process (Linux), or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return None


def _reset_peak():
    """Restarts the peak resident size count (Linux 4.0+); True if it did."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return _status_bytes("VmHWM") is not None


def _process_peak_bytes():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # KB on Linux


def _child(spec):
    """Entry point of one child: prints its measurement as JSON."""
    import tensorflow as tf

    from keras_homeostasis.lab import bench_timing

    case = Case(*spec["case"])
    model, callbacks = bench_timing.build(
        spec["variant"], case, **spec["rule_settings"]
    )
    x, y = bench_timing.random_data(case.batch, spec["steps"])
    gpu = bool(tf.config.list_physical_devices("GPU"))
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    before = _status_bytes("VmRSS") or _process_peak_bytes()
    scope = "fit" if _reset_peak() else "process"
    model.fit(x, y, batch_size=case.batch, epochs=1, verbose=0, callbacks=callbacks)
    peak = _status_bytes("VmHWM") if scope == "fit" else _process_peak_bytes()
    result = {
        "variant": spec["variant"],
        "peak_rss_mb": round(peak / MB, 1),
        "fit_rss_growth_mb": round(max(0, peak - before) / MB, 1),
        "peak_scope": scope,
        "device_peak_mb": "",
    }
    if gpu:
        info = tf.config.experimental.get_memory_info("GPU:0")
        result["device_peak_mb"] = round(info["peak"] / MB, 1)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def _start(case, variant, steps, gpus, rule_settings):
    spec = {
        "case": list(case),
        "variant": variant,
        "steps": steps,
        "rule_settings": rule_settings,
    }
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


def measure_memory(case, variants, steps, gpus=False, rule_settings=None):
    """One row per variant, its homeostatic variants built with
    `rule_settings` (`bench_timing.build`'s `period`, `silence_evidence`):
    `case` fields, `variant`, `peak_rss_mb`,
    `fit_rss_growth_mb`, `peak_scope` (`fit` or `process`), `device_peak_mb`
    (empty without a GPU) and `growth_vs_none_mb` (the fit's growth minus
    that of `none`)."""
    rule_settings = rule_settings or {}
    children = {v: _start(case, v, steps, gpus, rule_settings) for v in variants}
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
