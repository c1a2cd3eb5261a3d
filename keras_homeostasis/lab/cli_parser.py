"""The `keras-homeostasis` argument parser: its commands and their flags."""

import argparse


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
    continual.add_argument(
        "--seed",
        type=_seed,
        help="override continual.seed (permutations, order, weights): "
        "another seed needs its own --out",
    )


def _add_bench(commands):
    from keras_homeostasis.lab.bench_cases import ALL_VARIANTS
    from keras_homeostasis.lab.bench_cases import CLI_NAMES
    from keras_homeostasis.lab.bench_cases import VARIANTS

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
        "--period",
        type=_positive,
        help="run the rule every PERIOD optimizer steps (default 1)",
    )
    bench.add_argument(
        "--silence-evidence",
        type=_positive,
        metavar="K",
        help="the homeostatic variants' `silence_evidence` (default: off)",
    )
    bench.add_argument(
        "--online-depth",
        type=_positive,
        metavar="N",
        help="hidden layers of the online MLP (default 3)",
    )
    bench.add_argument(
        "--settings",
        nargs="+",
        choices=list(CLI_NAMES),
        help="parts to run (default: all)",
    )
    bench.add_argument(
        "--variants",
        nargs="+",
        choices=list(ALL_VARIANTS),
        metavar="VARIANT",
        help=f"variants to time, of {', '.join(ALL_VARIANTS)} (none, the "
        f"reference, always runs; default: {' '.join(VARIANTS)})",
    )
    bench.add_argument(
        "--gpus",
        action="store_true",
        help="MirroredStrategy over all visible GPUs (default: two logical CPUs)",
    )
