"""The table of a search's trials: `trials.csv` and `trials.md`.

One row per trial, in trial order: its id, status (`COMPLETED`, `FAILED`,
`RUNNING` for one interrupted mid-way), objective value, best epoch, the
validation metrics of that epoch, then every hyper-parameter (`scaling/`
prefix dropped; empty when inactive in that trial), and for failed trials
the reason.
"""

import csv
import math

from keras_homeostasis.tuning import search_space as space_lib

METRIC_COLUMNS = (
    "val_accuracy",
    "val_loss",
    "val_usage_entropy",
    "val_homeostasis_score",
)
# keras-tuner's own bookkeeping entries (Hyperband), kept at the end.
TUNER_PREFIX = "tuner/"


def trial_rows(oracle):
    """One dict per trial of a keras-tuner `Oracle`, in trial order."""
    best = oracle.get_best_trials(1)
    best_id = best[0].trial_id if best and best[0].status == "COMPLETED" else None
    rows = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        row = {
            "trial": trial_id,
            "status": str(trial.status),
            "best": "yes" if trial_id == best_id else "",
            "objective": _number(trial.score),
            "best_epoch": _best_epoch(trial),
        }
        for name in METRIC_COLUMNS:
            value = None
            if trial.metrics.exists(name):
                value = trial.metrics.get_last_value(name)
            row[name] = _number(value)
        for name, value in trial.hyperparameters.values.items():
            row[_column(name)] = value
        row["reason"] = _reason(trial)
        rows.append(row)
    return rows


def _best_epoch(trial):
    if trial.best_step is None or str(trial.status) != "COMPLETED":
        return ""
    # Hyperband's continued trials start at `tuner/initial_epoch`.
    start = trial.hyperparameters.values.get("tuner/initial_epoch", 0)
    return int(trial.best_step) + int(start) + 1


def _column(name):
    if name.startswith(space_lib.PREFIX):
        return name[len(space_lib.PREFIX) :]
    return name


def _number(value):
    if value is None:
        return ""
    value = float(value)
    return value if math.isfinite(value) else str(value)


def _reason(trial):
    if str(trial.status) == "COMPLETED" or not trial.message:
        return ""
    lines = [line.strip() for line in str(trial.message).strip().splitlines()]
    # keras-tuner stores the traceback; its last line is the error.
    return lines[-1] if lines else ""


def columns(rows):
    """Column order: fixed columns, hyper-parameters, tuner entries, reason."""
    fixed = ["trial", "status", "best", "objective", "best_epoch", *METRIC_COLUMNS]
    hps, tuner = [], []
    for row in rows:
        for key in row:
            if key in fixed or key == "reason" or key in hps or key in tuner:
                continue
            (tuner if key.startswith(TUNER_PREFIX) else hps).append(key)
    return fixed + hps + tuner + ["reason"]


def write_csv(rows, path):
    header = columns(rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)


def to_markdown(rows, objective):
    """A Markdown table; floats rounded, the best trial's row in bold."""
    header = [c for c in columns(rows) if not c.startswith(TUNER_PREFIX)]
    lines = [
        f"Objective: `{objective}`. {_summary(rows)}",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    for row in rows:
        cells = [_cell(row.get(name, "")) for name in header]
        if row["best"]:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _summary(rows):
    done = sum(r["status"] == "COMPLETED" for r in rows)
    failed = sum(r["status"] == "FAILED" for r in rows)
    return f"{len(rows)} trials: {done} completed, {failed} failed."


def _cell(value):
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")
