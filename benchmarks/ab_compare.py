"""Before and after: one bench variant timed on two source trees, round by round.

Two runs of `keras-homeostasis bench`, one per version of the code, are
minutes apart, and this shared 2-core machine drifts by 10-30% between
them. Here each tree gets a worker process of its own, which builds the
bench's case once (no normalization and `--variant`, compiled as the bench
compiles them) and keeps it warm; the workers then take turns, one round
each, so the two ratios of a round are seconds apart. A round fits both
models for `--epochs` epochs (rotated order); its ratio is the variant's
steady-state epoch time over no normalization's, as in the bench. Printed:
each tree's median ratio, and the median (and quartiles) over rounds of
after / before, in process CPU and wall time.

    python benchmarks/ab_compare.py BEFORE_TREE AFTER_TREE \\
        --variant held_centered_scaling --setting online --rounds 16

A tree is a directory holding `keras_homeostasis/` (a `git worktree` of an
earlier commit, say). Pass the same tree twice to see the spread of
identical code, the yardstick for a difference.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

SETTINGS = ("online", "one-device", "one-device-xla")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="source tree of the code before")
    parser.add_argument("after", help="source tree of the code after")
    parser.add_argument("--variant", default="held_centered_scaling")
    parser.add_argument("--setting", choices=SETTINGS, default="online")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch")
    args = parser.parse_args(argv)
    for tree in (args.before, args.after):
        if not os.path.isdir(os.path.join(tree, "keras_homeostasis")):
            parser.error(f"no keras_homeostasis/ in the tree: {tree!r}")
    if args.rounds < 1 or args.epochs < 2:
        parser.error(
            f"need --rounds >= 1 and --epochs >= 2 (the first epoch of a fit is "
            f"not steady). Received: rounds={args.rounds}, epochs={args.epochs}"
        )
    return args


def worker(setting, variant, epochs, steps):
    """Builds the case in this process's tree and answers `round` lines
    with one JSON line of steady-state ratios."""
    from keras_homeostasis.lab import bench_cases as bc
    from keras_homeostasis.lab import bench_timing as bt
    from keras_homeostasis.lab.bench import setting_options

    online = setting == "online"
    case = bc.ONLINE_CASE if online else bc.HEADLINE
    options = setting_options(setting)
    steps = steps or (1500 if online else 60)
    x, y = bt.random_data(case.batch, steps)
    bt.warm_up(**options)
    runs = [bt.VariantRun(name, case, **options) for name in ("none", variant)]
    for run in runs:  # traced and compiled before any round
        run.fit(x[: 5 * case.batch], y[: 5 * case.batch], 2)
    print("ready", flush=True)
    for turn, line in enumerate(sys.stdin):
        if line.strip() != "round":
            break
        for run in runs[turn % 2 :] + runs[: turn % 2]:
            run.fit(x, y, epochs)
        # The bench's steady state: the median epoch after a fit's first
        # (clock 0 wall, 1 process CPU).
        none, scaled = (run.fits[-1] for run in runs)
        clocks = {"wall": 0, "cpu": 1}
        ratios = {
            k: bt._steady(scaled, c) / bt._steady(none, c) for k, c in clocks.items()
        }
        print(json.dumps(ratios), flush=True)


def start(tree, args):
    env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    command = [sys.executable, os.path.abspath(__file__), "--worker"]
    command += [args.setting, args.variant, str(args.epochs), str(args.steps or 0)]
    # Started away from any checkout, so the tree given is the one imported.
    process = subprocess.Popen(
        command,
        cwd=tempfile.gettempdir(),
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    _expect(process, "ready")
    return process


def _expect(process, word):
    for line in process.stdout:
        if line.strip() == word:
            return
    raise RuntimeError(f"a worker ended before saying {word!r}: {process.args}")


def take_round(process):
    process.stdin.write("round\n")
    process.stdin.flush()
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"a worker ended mid-round: {process.args}")
    return json.loads(line)


def quartiles(values):
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 4], statistics.median(ordered), ordered[(3 * n) // 4]


def main(argv=None):
    args = parse_args(argv)
    workers = {"before": start(args.before, args), "after": start(args.after, args)}
    found = {"before": [], "after": []}
    try:
        for r in range(args.rounds):
            order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
            for name in order:
                found[name].append(take_round(workers[name]))
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
    finally:
        for process in workers.values():
            process.stdin.close()
            process.wait()
    report(args, found)


def report(args, found):
    rounds = f"{args.rounds} rounds of {args.epochs} epochs"
    print(f"{args.variant}, {args.setting}, {rounds}")
    print("| clock | before / none | after / none | after / before: q1, median, q3 |")
    print("| --- | --- | --- | --- |")
    for clock in ("cpu", "wall"):
        before = [r[clock] for r in found["before"]]
        after = [r[clock] for r in found["after"]]
        paired = quartiles([a / b for a, b in zip(after, before)])
        print(
            f"| {clock} | {statistics.median(before):.3f} | "
            f"{statistics.median(after):.3f} | "
            + ", ".join(f"{v:.3f}" for v in paired)
            + " |"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        setting, variant, epochs, steps = sys.argv[2:6]
        worker(setting, variant, int(epochs), int(steps))
    else:
        main()
