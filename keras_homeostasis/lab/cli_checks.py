"""Checks the command line makes before any work starts, and its one-line errors."""

import os
import sys

# Exit status of a command refused for bad input (argparse's own).
BAD_INPUT = 2


def fail(error):
    # One line: a multi-line message (a YAML parser's) is joined.
    text = " ".join(str(error).split())
    print(f"keras-homeostasis: error: {text}", file=sys.stderr)
    return BAD_INPUT


def config_problem(path):
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


def folder_problem(argument, path):
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


def output_folder(args, config):
    """`(argument, folder)`: where this command writes its results."""
    flag = "--run-dir" if args.command == "train" else "--out"
    given = getattr(args, flag[2:].replace("-", "_"))
    if given:
        return flag, given
    return "output.run_dir", config["output"]["run_dir"]


def may_write(args, config):
    """A run folder that is absent or empty, or `--overwrite` (or a worker)."""
    if args.overwrite or os.environ.get("TF_CONFIG"):
        return True
    run_dir = args.run_dir or config["output"]["run_dir"]
    return not (os.path.isdir(run_dir) and os.listdir(run_dir))


def has_section(path, section):
    import yaml

    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    return isinstance(raw, dict) and raw.get(section) is not None


def bench_plan(args):
    """`(plan overrides, error)` from --rounds, --epochs, --steps, --period,
    --silence-evidence, --variants and --online-depth."""
    for name in ("rounds", "epochs"):
        value = getattr(args, name)
        if value is not None and value < 2:
            return None, (
                f"argument --{name}: expected at least 2 (the first is reported "
                f"apart from the later ones), got {value}"
            )
    names = (
        "rounds",
        "epochs",
        "steps",
        "period",
        "silence_evidence",
        "variants",
        "online_depth",
    )
    plan = {k: getattr(args, k) for k in names}
    return {k: v for k, v in plan.items() if v is not None}, None
