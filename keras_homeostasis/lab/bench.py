"""`keras-homeostasis bench`: what homeostasis costs in the `fit` users run.

Variants of the same model (`models.build_model`, SGD with momentum 0.9,
random data of MNIST shape): `none` (the reference), `batchnorm`,
`layernorm`, `held_centered_scaling` (plain layers with
`SynapticScalingCallback()`, whose defaults center the inputs and hold the
norms), `scaling` (the callback's rule alone: `center_inputs=False,
hold_norms=False`), `homeostatic_layers` and `scale_invariant_layers` (the
same layers with `scale_invariant=True`); on request (`variants`) also
`centered_scaling` (the callback with `center_inputs=True` alone),
`centered_layers` and `centered_scale_invariant_layers`
(`center_inputs=True`), and the two ways of holding each unit's kernel norm
that the callback's `hold_norms=True` is weighed against: `weightnorm`
(weight normalization) and `unitnorm` (Keras' `UnitNorm` constraint, the
cheapest norm hold Keras ships). Models: the MLP
of MNIST shape (784 inputs, 3 x 256 by default; width, depth and batch size
vary for the growth tables) and the small CNN. How a case is timed: `bench_timing`.

Settings:

- `one device`: Keras' default `jit_compile` (off on a CPU, on for one GPU);
- `one device, XLA`: `jit_compile=True`, the whole step in one XLA cluster;
- `mirrored`: MirroredStrategy over two logical CPU devices, or over all
  GPUs with `gpus=True`; it needs its devices configured before TensorFlow
  starts, so it runs in a child process of this module;
- `online`: batch size 1, `steps_per_execution=250`, `jit_compile=True`,
  plain SGD (no momentum), on the MLP 784-100x3-10 (`online_depth` hidden
  layers if given; no BatchNorm:
  meaningless at one sample per batch).

Peak memory of one `fit` per variant: `bench_memory`.
"""

import json
import os
import subprocess
import sys
import time

from keras_homeostasis.lab import bench_cases as bc
from keras_homeostasis.lab.progress import clock

RESULT_PREFIX = "BENCH-RESULT:"


def setting_options(setting):
    """Compile options of a single-process setting."""
    if setting == bc.ONLINE:
        # Plain SGD, as online and continual learning run (Dohare et al.;
        # `keras-homeostasis continual`): with momentum the optimizer's own
        # update doubles the step and hides what homeostasis costs.
        return {
            "jit_compile": True,
            "steps_per_execution": bc.ONLINE_STEPS_PER_EXECUTION,
            "momentum": 0.0,
        }
    return {"jit_compile": True if setting == bc.ONE_DEVICE_XLA else "auto"}


def rule_settings(plan):
    """The homeostatic variants' rule settings the plan asks for."""
    return {
        "period": plan.get("period", 1),
        "silence_evidence": plan.get("silence_evidence"),
    }


def measure(setting, cases, plan, strategy=None, log=print):
    """Times every case of one setting; returns its rows."""
    from keras_homeostasis.lab import bench_timing

    options = {"strategy": strategy, **rule_settings(plan), **setting_options(setting)}
    online = setting == bc.ONLINE
    variants = bc.chosen_variants(plan.get("variants"))
    variants = bc.online_variants(variants) if online else variants
    steps = plan["online_steps"] if online else plan["steps"]
    bench_timing.warm_up(**options)
    rows = []
    for case in cases:
        started = time.perf_counter()
        found = bench_timing.measure_case(
            case,
            variants,
            plan["rounds"],
            plan["epochs"],
            bc.case_steps(case, steps),
            **options,
        )
        rows.extend({"setting": setting, **row} for row in found)
        seconds = time.perf_counter() - started
        log(f"  {setting}: {bc.case_label(case)} ({clock(seconds)})")
    return rows


def mirrored_strategy(gpus):
    """MirroredStrategy over all GPUs, or over two logical CPU devices.

    Must run before any other TensorFlow op of the process.
    """
    import tensorflow as tf

    if gpus:
        return tf.distribute.MirroredStrategy()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def _child(spec):
    """Entry point of the mirrored child process: prints its rows as JSON."""
    strategy = mirrored_strategy(spec["gpus"])
    rows = measure(
        bc.MIRRORED,
        [bc.Case(*c) for c in spec["cases"]],
        spec["plan"],
        strategy,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    result = {"replicas": strategy.num_replicas_in_sync, "rows": rows}
    print(RESULT_PREFIX + json.dumps(result))


def measure_mirrored(cases, plan, gpus=False):
    """Runs `measure` under MirroredStrategy in a child process.

    Returns `(replicas, rows)`. The child's progress lines pass through.
    """
    spec = {"cases": [list(c) for c in cases], "plan": plan, "gpus": gpus}
    command = [sys.executable, "-m", "keras_homeostasis.lab.bench", json.dumps(spec)]
    env = {**os.environ}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the mirrored benchmark failed (exit {done.returncode})")
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
            return result["replicas"], result["rows"]
    raise RuntimeError("the mirrored benchmark printed no result")


def environment_line():
    """Versions, devices, load and date, for the report."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    devices = f"{len(gpus)} GPU(s)" if gpus else f"{os.cpu_count()} CPU cores, no GPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}; {devices}; "
        f"1-minute load average at start {load:.2f}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


class Results:
    """What the bench found so far; `save` (re)writes the files in `out_dir`:
    `bench.csv`, `bench_memory.csv` (if measured) and `bench.md`."""

    def __init__(self, out_dir, command, plan):
        self.out_dir, self.command, self.plan = out_dir, command, plan
        self.rows, self.memory = [], []
        self.notes = [environment_line() + "."]
        self.started = time.perf_counter()

    def report(self):
        from keras_homeostasis.lab import bench_report

        plan = self.plan
        evidence = plan.get("silence_evidence")
        evidence = "" if evidence is None else f", silence_evidence {evidence}"
        took = (
            f"{plan['rounds']} fits per variant of {plan['epochs']} epochs of "
            f"{plan['steps']} steps (a quarter for the CNN, {plan['online_steps']} "
            "online); "
            f"the rule every {plan.get('period', 1)} step(s){evidence}; "
            f"{clock(time.perf_counter() - self.started)} elapsed."
        )
        notes = [*self.notes, took]
        return bench_report.Report(self.rows, self.memory, self.command, notes)

    def save(self):
        from keras_homeostasis.lab import bench_report

        os.makedirs(self.out_dir, exist_ok=True)
        path = os.path.join(self.out_dir, "bench")
        bench_report.write_csv(self.rows, path + ".csv")
        if self.memory:
            bench_report.write_memory_csv(self.memory, path + "_memory.csv")
        with open(path + ".md", "w", encoding="utf-8") as f:
            f.write(self.report().markdown())


def run_bench(results, cases, settings, gpus=False, log=print):
    """Measures every setting in `settings` (and `memory` if listed) into
    `results`, saving them after each part."""
    from keras_homeostasis.lab import bench_memory

    plan = results.plan
    for setting in (s for s in bc.SETTINGS if s in settings):
        log(f"{setting}: {len(cases[setting])} case(s)")
        if setting == bc.MIRRORED:
            replicas, found = measure_mirrored(cases[setting], plan, gpus)
            results.notes.append(f"MirroredStrategy over {replicas} replicas.")
        else:
            found = measure(setting, cases[setting], plan, log=log)
        results.rows.extend(found)
        results.save()
    if bc.MEMORY in settings:
        log(f"memory: {bc.case_label(bc.HEADLINE)}, one child process per variant")
        variants = bc.chosen_variants(plan.get("variants"))
        results.memory = bench_memory.measure_memory(
            bc.HEADLINE, variants, plan["steps"], gpus, rule_settings(plan)
        )
        results.save()


def bench(
    quick,
    out_dir,
    plan=None,
    settings=None,
    gpus=False,
    command="keras-homeostasis bench",
    log=print,
):
    """Runs the benchmark, writes `bench.csv`, `bench_memory.csv` and
    `bench.md` to `out_dir`, prints the report and its headline lines;
    returns the timing rows.

    `plan` overrides entries of `bench_cases.QUICK` or `FULL` (`rounds`,
    `epochs`, `steps`, `online_steps`, `period`, `silence_evidence`) and
    may name `variants` (of `bench_cases.ALL_VARIANTS`; default
    `bench_cases.VARIANTS`) and `online_depth` (the online MLP's hidden
    layers, default 3);
    `settings` lists entries of `bench_cases.SETTINGS` and
    `bench_cases.MEMORY` (default: all).
    """
    # The mirrored and memory children share the GPUs with this process:
    # none may take all of a GPU's memory up front.
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    plan = {**(bc.QUICK if quick else bc.FULL), **(plan or {})}
    results = Results(out_dir, command, plan)
    settings = settings or [*bc.SETTINGS, bc.MEMORY]
    cases = bc.cases(quick, plan.get("online_depth"))
    run_bench(results, cases, settings, gpus, log)
    report = results.report()
    log(report.markdown())
    for line in report.headlines():
        log(line)
    return results.rows


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
