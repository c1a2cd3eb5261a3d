"""The `keras-homeostasis` command line: `train`, `compare`, `tune`, ...

    keras-homeostasis train CONFIG [--run-dir DIR] [--epochs N] [--workers N]
    keras-homeostasis compare CONFIG [--out DIR] [--epochs N] [--seeds S ...]
    keras-homeostasis tune CONFIG [--out DIR] [--epochs N] [--max-trials N]
                               [--overwrite] [--quiet | --verbose]
    keras-homeostasis bench [--quick] [--out DIR] [--settings ...] [--rounds N]
                            [--epochs N] [--steps N] [--gpus]
    keras-homeostasis continual CONFIG [--out DIR] [--tasks N] [--methods M ...]

Configs are YAML files (see `docs/configs.md`). Each command's work is done
by its job module beside this one: `train` (under `TF_CONFIG` or with
`--workers` by `multi_worker`), `compare`, `tune`, `bench` and `continual`
(whose configs have their own schema, in `continual`).
"""

import argparse
import os
import sys

# Exit status of a run stopped with Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130
BAD_INPUT = 2


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _seed(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a seed >= 0, got {text}")
    return value


def build_parser():
    from keras_homeostasis import __version__

    parser = argparse.ArgumentParser(
        prog="keras-homeostasis",
        description="Train and compare models with homeostatic synaptic scaling.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train one model and write a run folder")
    train.add_argument("config", help="YAML experiment config")
    train.add_argument("--run-dir", help="run folder (default: output.run_dir)")
    train.add_argument("--epochs", type=_positive, help="override training.epochs")
    train.add_argument(
        "--overwrite", action="store_true", help="reuse a run folder that is not empty"
    )
    train.add_argument(
        "--quiet", action="store_true", help="no progress bar, summary only"
    )
    train.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="train in N local worker processes (MultiWorkerMirroredStrategy "
        "on 127.0.0.1) and check that all end with identical weights",
    )
    train.add_argument(
        "--worker-dir",
        help="under TF_CONFIG: where a non-chief worker writes its outputs "
        "(default: a temporary folder, deleted)",
    )
    compare = commands.add_parser(
        "compare", help="compare normalization methods over seeds and optimizers"
    )
    compare.add_argument("config", help="YAML experiment config with `compare`")
    compare.add_argument("--out", help="results folder (default: output.run_dir)")
    compare.add_argument("--epochs", type=_positive, help="override training.epochs")
    compare.add_argument(
        "--seeds", type=_seed, nargs="+", help="override compare.seeds"
    )
    tune = commands.add_parser(
        "tune", help="search the scaling settings with keras-tuner"
    )
    tune.add_argument("config", help="YAML experiment config with `tune`")
    tune.add_argument("--out", help="results folder (default: output.run_dir)")
    tune.add_argument("--epochs", type=_positive, help="override training.epochs")
    tune.add_argument("--max-trials", type=_positive, help="override tune.max_trials")
    tune.add_argument(
        "--overwrite", action="store_true", help="start afresh instead of resuming"
    )
    detail = tune.add_mutually_exclusive_group()
    detail.add_argument("--quiet", action="store_true", help="summary only")
    detail.add_argument("--verbose", action="store_true", help="also print every epoch")
    _add_bench(commands)
    _add_continual(commands)
    return parser


def _add_continual(commands):
    from keras_homeostasis.lab.continual import METHODS

    continual = commands.add_parser(
        "continual",
        help="Online Permuted MNIST: loss of plasticity of each method (Dohare 2024)",
    )
    continual.add_argument("config", help="YAML continual config")
    continual.add_argument("--out", help="results folder (default: output.run_dir)")
    continual.add_argument("--tasks", type=_positive, help="override continual.tasks")
    continual.add_argument(
        "--methods", nargs="+", choices=METHODS, help="override continual.methods"
    )


def _continual(args):
    from keras_homeostasis.lab import continual

    overrides = {}
    if args.tasks is not None:
        overrides["continual"] = {"tasks": args.tasks}
    if args.methods:
        overrides.setdefault("continual", {})["methods"] = list(args.methods)
    problem = _config_problem(args.config)
    if problem:
        return _fail(problem)
    try:
        config = continual.load_config(args.config, overrides=overrides)
    except continual.ContinualConfigError as e:
        return _fail(e)
    out = args.out or config["output"]["run_dir"]
    problem = _folder_problem("--out" if args.out else "output.run_dir", out)
    if problem:
        return _fail(problem)
    try:
        pool = continual.load_pool(config)
    except continual.ContinualConfigError as e:
        return _fail(e)
    except (FileNotFoundError, ImportError, RuntimeError, ValueError) as e:
        return _fail(f"`data.dataset`: {e}")
    try:
        continual.run_continual(
            config, out_dir=out, pool=pool, log=lambda s: print(s, flush=True)
        )
    except KeyboardInterrupt:
        return _interrupted(out, "tasks")
    except ValueError as e:
        return _fail(e)
    print(f"Results: {os.path.join(out, 'results.csv')}, results.md and *.png")
    return 0


def _add_bench(commands):
    from keras_homeostasis.lab.bench_cases import CLI_NAMES

    bench = commands.add_parser(
        "bench",
        help="time whole fit epochs of homeostasis vs no normalization, "
        "BatchNorm and LayerNorm",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="headline cases, few rounds (what the README quotes; minutes)",
    )
    bench.add_argument("--out", default="runs/bench", help="folder for bench.csv/md")
    bench.add_argument("--rounds", type=_positive, help="fits per variant (>= 2)")
    bench.add_argument("--epochs", type=_positive, help="epochs per fit (>= 2)")
    bench.add_argument(
        "--steps", type=_positive, help="steps per epoch (batch settings)"
    )
    bench.add_argument(
        "--settings",
        nargs="+",
        choices=list(CLI_NAMES),
        help="parts to run (default: all)",
    )
    bench.add_argument(
        "--gpus",
        action="store_true",
        help="MirroredStrategy over all visible GPUs (default: two logical CPUs)",
    )


def _bench_plan(args):
    """`(plan overrides, error)` from --rounds, --epochs and --steps."""
    for name in ("rounds", "epochs"):
        value = getattr(args, name)
        if value is not None and value < 2:
            return None, (
                f"argument --{name}: expected at least 2 (the first is reported "
                f"apart from the later ones), got {value}"
            )
    plan = {k: getattr(args, k) for k in ("rounds", "epochs", "steps")}
    return {k: v for k, v in plan.items() if v is not None}, None


def _bench(args, argv):
    from keras_homeostasis.lab import bench
    from keras_homeostasis.lab.bench_cases import CLI_NAMES

    plan, error = _bench_plan(args)
    if error:
        return _fail(error)
    problem = _folder_problem("--out", args.out)
    if problem:
        return _fail(problem)
    if args.gpus and not _gpu_count():
        return _fail("argument --gpus: no GPU visible to TensorFlow")
    try:
        bench.bench(
            args.quick,
            args.out,
            plan=plan,
            settings=[CLI_NAMES[s] for s in args.settings or []] or None,
            gpus=args.gpus,
            command=" ".join(["keras-homeostasis", *argv]),
            log=lambda s: print(s, flush=True),
        )
    except KeyboardInterrupt:
        print(
            f"keras-homeostasis: bench interrupted; the parts it finished are in "
            f"{args.out}",
            file=sys.stderr,
        )
        return INTERRUPTED
    return 0


def _gpu_count():
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def _overrides(args):
    overrides = {}
    if args.epochs is not None:
        overrides["training"] = {"epochs": args.epochs}
    if getattr(args, "seeds", None):
        overrides["compare"] = {"seeds": args.seeds}
    if getattr(args, "max_trials", None) is not None:
        overrides["tune"] = {"max_trials": args.max_trials}
    return overrides


def _train(args, config, data):
    from keras_homeostasis.lab import multi_worker
    from keras_homeostasis.lab import train

    verbose = 0 if args.quiet else 1
    if multi_worker.cluster_task() is not None:
        result = multi_worker.train_in_cluster(
            config, args.run_dir, args.worker_dir, verbose=verbose, data=data
        )
    else:
        result = train.train(config, run_dir=args.run_dir, verbose=verbose, data=data)
    print(result["report"].to_markdown())
    status = " (diverged: NaN loss)" if result["diverged"] else ""
    print(
        f"Test accuracy {result['test_accuracy']:.4f}{status}; trained in "
        f"{result['seconds']:.1f} s. Run folder: {result['run_dir']}"
    )
    return 0


def _launch_workers(args, config):
    from keras_homeostasis.lab import multi_worker

    if os.environ.get("TF_CONFIG"):
        return _fail("--workers starts its own local cluster: unset TF_CONFIG")
    train_args = [args.config, "--overwrite"]
    if args.epochs is not None:
        train_args += ["--epochs", str(args.epochs)]
    if args.quiet:
        train_args += ["--quiet"]
    run_dir = args.run_dir or config["output"]["run_dir"]
    return multi_worker.launch_local(train_args, args.workers, run_dir)


def _interrupted(out, finished):
    """Says where the finished work is and how to resume; the exit code."""
    print(
        f"\nInterrupted. Finished {finished} are in "
        f"{os.path.join(out, 'results.csv')}; run the same command again to resume.",
        file=sys.stderr,
    )
    return INTERRUPTED


def _compare(args, config, data):
    from keras_homeostasis.lab import compare

    out = args.out or config["output"]["run_dir"]
    try:
        compare.run_comparison(
            config, out_dir=out, data=data, log=lambda s: print(s, flush=True)
        )
    except KeyboardInterrupt:
        return _interrupted(out, "runs")
    print(f"Results: {os.path.join(out, 'results.csv')} and results.md")
    return 0


def _tune(args, config, data):
    from keras_homeostasis.lab import config as config_lib
    from keras_homeostasis.lab import tune

    out = args.out or config["output"]["run_dir"]
    verbose = 0 if args.quiet else 2 if args.verbose else 1
    try:
        result = tune.run_search(
            config,
            out_dir=out,
            data=data,
            verbose=verbose,
            log=lambda s: print(s, flush=True),
            overwrite=True if args.overwrite else None,
        )
    except KeyboardInterrupt:
        print(
            f"\nInterrupted. Finished trials are in {os.path.join(out, 'trials.csv')}; "
            "run the same command again to resume.",
            file=sys.stderr,
        )
        return INTERRUPTED
    except config_lib.ConfigError as e:
        return _fail(e)
    print(tune.summary(result, config))
    return 0 if result["best_config"] and not result["stopped"] else 1


def _may_write(args, config):
    """A run folder that is absent or empty, or `--overwrite` (or a worker)."""
    if args.overwrite or os.environ.get("TF_CONFIG"):
        return True
    run_dir = args.run_dir or config["output"]["run_dir"]
    return not (os.path.isdir(run_dir) and os.listdir(run_dir))


def _fail(error):
    # One line: a multi-line message (a YAML parser's) is joined.
    text = " ".join(str(error).split())
    print(f"keras-homeostasis: error: {text}", file=sys.stderr)
    return BAD_INPUT


def _config_problem(path):
    """Why `path` cannot be read as a config file (one line), or None."""
    if not os.path.exists(path):
        return f"argument CONFIG: config file not found: {path!r}"
    if not os.path.isfile(path):
        return f"argument CONFIG: not a file: {path!r}"
    try:
        with open(path, encoding="utf-8") as f:
            f.read()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        return f"argument CONFIG: cannot read the config file {path!r}: {reason}"
    return None


def _folder_problem(argument, path):
    """Why the output folder `path` cannot be made or written (one line), or None.

    Checked before any work starts, without creating anything.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        return f"argument {argument}: not a folder: {path!r}"
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return (
            f"argument {argument}: cannot create the folder {path!r}: "
            f"{existing!r} is a file"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"argument {argument}: cannot write in {existing!r} (for {path!r})"
    return None


def _output_folder(args, config):
    """`(argument, folder)`: where this command writes its results."""
    flag = "--run-dir" if args.command == "train" else "--out"
    given = getattr(args, flag[2:].replace("-", "_"))
    if given:
        return flag, given
    return "output.run_dir", config["output"]["run_dir"]


def _has_section(path, section):
    import yaml

    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    return isinstance(raw, dict) and raw.get(section) is not None


def main(argv=None):
    """Runs the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    from keras_homeostasis.lab import dependencies

    absent = dependencies.missing_message()
    if absent:
        return _fail(absent)
    if getattr(args, "config", None):
        from keras_homeostasis.lab import config as config_lib

        # A shipped config by name (`quickstart`) from any folder.
        args.config = config_lib.shipped_config(args.config)
    # Quiet TensorFlow's C++ start-up logging unless the user chose a level.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.command == "bench":
        return _bench(args, sys.argv[1:] if argv is None else argv)
    if args.command == "continual":
        return _continual(args)
    from keras_homeostasis.lab import config as config_lib
    from keras_homeostasis.lab import train

    problem = _config_problem(args.config)
    if problem:
        return _fail(problem)
    try:
        config = config_lib.load_config(args.config, overrides=_overrides(args))
    except config_lib.ConfigError as e:
        return _fail(f"argument CONFIG: {e}")
    if args.command == "compare" and not _has_section(args.config, "compare"):
        return _fail(
            f"argument CONFIG: {args.config!r} has no `compare:` section; "
            "`compare` needs one (its methods and seeds: see docs/configs.md, "
            "or configs/compare_quick.yaml)"
        )
    if args.command == "train" and not _may_write(args, config):
        run_dir = args.run_dir or config["output"]["run_dir"]
        return _fail(
            f"--run-dir: the run folder {run_dir} is not empty; pass --overwrite "
            "to write into it, or choose another --run-dir"
        )
    # Under TF_CONFIG the cluster code decides who writes where.
    if not (args.command == "train" and os.environ.get("TF_CONFIG")):
        problem = _folder_problem(*_output_folder(args, config))
        if problem:
            return _fail(problem)
    if args.command == "train" and args.workers > 1:
        return _launch_workers(args, config)
    if args.command == "train" and os.environ.get("TF_CONFIG"):
        from keras_homeostasis.lab import multi_worker

        # TensorFlow needs the multi-worker strategy before any other op.
        multi_worker.cluster_strategy()
    try:
        # Missing files, bad .npz files and failed downloads end here cleanly.
        data = train.load_data(config)
    except (FileNotFoundError, ImportError, RuntimeError, ValueError) as e:
        return _fail(f"`data.dataset`: {e}")
    if args.command == "train":
        return _train(args, config, data)
    if args.command == "tune":
        return _tune(args, config, data)
    return _compare(args, config, data)


if __name__ == "__main__":
    sys.exit(main())
