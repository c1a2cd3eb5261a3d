"""The `keras-homeostasis` command line: `train`, `compare`, `tune`, ...

    keras-homeostasis train CONFIG [--run-dir DIR] [--epochs N] [--workers N]
    keras-homeostasis compare CONFIG [--out DIR] [--epochs N] [--seeds S ...]
    keras-homeostasis tune CONFIG [--out DIR] [--epochs N] [--max-trials N]
                               [--overwrite] [--quiet | --verbose]
    keras-homeostasis bench [--quick] [--out DIR] [--settings ...] [--rounds N]
                            [--epochs N] [--steps N] [--period N]
                            [--silence-evidence K] [--online-depth N]
                            [--variants V ...] [--gpus]
    keras-homeostasis continual CONFIG [--out DIR] [--tasks N] [--methods M ...]

Configs are YAML files (see `docs/configs.md`). Each command's work is done
by its job module beside this one: `train` (under `TF_CONFIG` or with
`--workers` by `multi_worker`), `compare`, `tune`, `bench` and `continual`
(whose configs have their own schema, in `continual`). The flags are in
`cli_parser`, the checks made before any work starts in `cli_checks`.
"""

import os
import sys

from keras_homeostasis.lab.cli_checks import BAD_INPUT  # noqa: F401 (exit status)
from keras_homeostasis.lab.cli_checks import bench_plan
from keras_homeostasis.lab.cli_checks import config_problem
from keras_homeostasis.lab.cli_checks import fail
from keras_homeostasis.lab.cli_checks import folder_problem
from keras_homeostasis.lab.cli_checks import has_section
from keras_homeostasis.lab.cli_checks import may_write
from keras_homeostasis.lab.cli_checks import output_folder
from keras_homeostasis.lab.cli_parser import build_parser

# Exit status of a run stopped with Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


def _continual(args):
    from keras_homeostasis.lab import continual

    overrides = {}
    if args.tasks is not None:
        overrides["continual"] = {"tasks": args.tasks}
    if args.methods:
        overrides.setdefault("continual", {})["methods"] = list(args.methods)
    if args.seed is not None:
        overrides.setdefault("continual", {})["seed"] = args.seed
    problem = config_problem(args.config)
    if problem:
        return fail(problem)
    try:
        config = continual.load_config(args.config, overrides=overrides)
    except continual.ContinualConfigError as e:
        return fail(e)
    argument, out = output_folder(args, config)
    problem = folder_problem(argument, out)
    if problem:
        return fail(problem)
    try:
        pool = continual.load_pool(config)
    except continual.ContinualConfigError as e:
        return fail(e)
    except (FileNotFoundError, ImportError, RuntimeError, ValueError) as e:
        return fail(f"`data.dataset`: {e}")
    try:
        continual.run_continual(
            config, out_dir=out, pool=pool, log=lambda s: print(s, flush=True)
        )
    except KeyboardInterrupt:
        return _interrupted(out, "tasks")
    except ValueError as e:
        return fail(e)
    print(f"Results: {os.path.join(out, 'results.csv')}, results.md and *.png")
    return 0


def _bench(args, argv):
    from keras_homeostasis.lab import bench
    from keras_homeostasis.lab.bench_cases import CLI_NAMES

    plan, error = bench_plan(args)
    if error:
        return fail(error)
    problem = folder_problem("--out", args.out)
    if problem:
        return fail(problem)
    if args.gpus and not _gpu_count():
        return fail("argument --gpus: no GPU visible to TensorFlow")
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
        return fail("--workers starts its own local cluster: unset TF_CONFIG")
    train_args = [args.config, "--overwrite"]
    if args.epochs is not None:
        train_args += ["--epochs", str(args.epochs)]
    if args.quiet:
        train_args += ["--quiet"]
    run_dir = args.run_dir or config["output"]["run_dir"]
    return multi_worker.launch_local(train_args, args.workers, run_dir)


def _interrupted(out, finished, table="results.csv"):
    """Says where the finished work is and how to resume; the exit code."""
    print(
        f"\nInterrupted. Finished {finished} are in "
        f"{os.path.join(out, table)}; run the same command again to resume.",
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
        return _interrupted(out, "trials", "trials.csv")
    except config_lib.ConfigError as e:
        return fail(e)
    print(tune.summary(result, config))
    return 0 if result["best_config"] and not result["stopped"] else 1


def main(argv=None):
    """Runs the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    from keras_homeostasis.lab import dependencies

    absent = dependencies.missing_message()
    if absent:
        return fail(absent)
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

    problem = config_problem(args.config)
    if problem:
        return fail(problem)
    try:
        config = config_lib.load_config(args.config, overrides=_overrides(args))
    except config_lib.ConfigError as e:
        return fail(f"argument CONFIG: {e}")
    if args.command == "compare" and not has_section(args.config, "compare"):
        return fail(
            f"argument CONFIG: {args.config!r} has no `compare:` section; "
            "`compare` needs one (its methods and seeds: see docs/configs.md, "
            "or configs/compare_quick.yaml)"
        )
    if args.command == "train" and not may_write(args, config):
        run_dir = args.run_dir or config["output"]["run_dir"]
        return fail(
            f"--run-dir: the run folder {run_dir} is not empty; pass --overwrite "
            "to write into it, or choose another --run-dir"
        )
    # Under TF_CONFIG the cluster code decides who writes where.
    if not (args.command == "train" and os.environ.get("TF_CONFIG")):
        problem = folder_problem(*output_folder(args, config))
        if problem:
            return fail(problem)
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
        return fail(f"`data.dataset`: {e}")
    if args.command == "train":
        return _train(args, config, data)
    if args.command == "tune":
        return _tune(args, config, data)
    return _compare(args, config, data)


if __name__ == "__main__":
    sys.exit(main())
