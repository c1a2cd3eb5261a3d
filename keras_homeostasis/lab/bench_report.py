"""Tables of `keras-homeostasis bench` results: CSV rows and Markdown.

A row (one variant of one case in one setting) holds `setting`, `width`,
`depth`, `batch`, `variant`, `ms_per_step`, `ratio` (to variant `none`, the
median of within-trial ratios), `extra_ms`, `weights` (trainable float32
values) and `extra_state` (float32 values of the homeostatic state, or of
BatchNormalization's moving statistics).
"""

import csv

from keras_homeostasis.lab.bench_cases import HEADLINE
from keras_homeostasis.lab.bench_cases import LABELS
from keras_homeostasis.lab.bench_cases import TARGETS
from keras_homeostasis.lab.bench_cases import VARIANTS

FIELDS = (
    "setting",
    "width",
    "depth",
    "batch",
    "variant",
    "ms_per_step",
    "ratio",
    "extra_ms",
    "weights",
    "extra_state",
)
HOMEOSTATIC = ("scaling", "homeostatic_layers")


def write_csv(rows, path):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _cases(rows):
    """`{(setting, width, depth, batch): {variant: row}}`, in first-seen order."""
    cases = {}
    for row in rows:
        key = (row["setting"], row["width"], row["depth"], row["batch"])
        cases.setdefault(key, {})[row["variant"]] = row
    return cases


def _table(header, lines):
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(str(c) for c in line) + " |" for line in lines]
    return out


def ratio_table(rows):
    """Step time of (a) and each variant's ratio to it, with the target check."""
    header = ["setting", "width", "depth", "batch", "(a) ms/step"]
    header += [LABELS[v] for v in VARIANTS[1:]] + ["target (c), (d)"]
    lines = []
    for (setting, width, depth, batch), by in _cases(rows).items():
        target = TARGETS[setting]
        met = all(by[v]["ratio"] <= target for v in HOMEOSTATIC if v in by)
        cells = [f"{by[v]['ratio']:.3f}" if v in by else "" for v in VARIANTS[1:]]
        verdict = f"<= {target:.2f} " + ("met" if met else "**missed**")
        lines.append(
            [setting, width, depth, batch, f"{by['none']['ms_per_step']:.2f}"]
            + cells
            + [verdict]
        )
    return _table(header, lines)


def growth_table(rows, axis):
    """Extra ms/step of (c) and (d) as `axis` ("width", "batch" or "depth")
    grows, the other two at the headline values; settings with one row only
    are left out."""
    anchor = dict(zip(("width", "depth", "batch"), HEADLINE))
    groups = {}
    for (setting, *values), by in _cases(rows).items():
        case = dict(zip(("width", "depth", "batch"), values))
        if all(case[k] == anchor[k] for k in anchor if k != axis):
            groups.setdefault(setting, []).append(by)
    header = ["setting", axis, "(a) ms/step"]
    for v in HOMEOSTATIC:
        header += [f"{LABELS[v]} +ms", f"{LABELS[v]} ratio"]
    lines = []
    for setting, cases in groups.items():
        if len(cases) < 2:
            continue
        for by in sorted(cases, key=lambda b: b["none"][axis]):
            line = [setting, by["none"][axis], f"{by['none']['ms_per_step']:.2f}"]
            for v in HOMEOSTATIC:
                line += [f"{by[v]['extra_ms']:+.3f}", f"{by[v]['ratio']:.3f}"]
            lines.append(line)
    return _table(header, lines) if lines else []


def memory_table(rows):
    """Extra float32 values per model: homeostatic state vs BatchNorm, vs weights."""
    header = ["width", "depth", "weights", "homeostatic state", "% of weights"]
    header += ["BatchNorm statistics"]
    seen = {}
    for (_, width, depth, _), by in _cases(rows).items():
        if (width, depth) in seen or "scaling" not in by:
            continue
        weights = by["none"]["weights"]
        state = by["scaling"]["extra_state"]
        bn = by["batchnorm"]["extra_state"] if "batchnorm" in by else ""
        seen[(width, depth)] = [
            width,
            depth,
            weights,
            state,
            f"{100 * state / weights:.2f}%",
            bn,
        ]
    return _table(header, [seen[k] for k in sorted(seen)])


def to_markdown(rows, command, environment):
    """The whole report: ratios, cost growth, memory, with how it was made."""
    lines = ["# keras-homeostasis bench", "", f"Command: `{command}`", ""]
    lines += [environment, ""]
    lines += ["## Step time: ratio to (a) no normalization", ""]
    lines += ratio_table(rows) + [""]
    for axis in ("width", "batch", "depth"):
        table = growth_table(rows, axis)
        if table:
            lines += [f"## Cost growth with {axis}", ""] + table + [""]
    lines += ["## Extra memory (float32 values)", ""] + memory_table(rows) + [""]
    lines += [
        "Each scaled layer of n units holds 7n + 2 float32 values (packed "
        "statistics 2n + 1, activity, firing rate, log gain, factor, shift, "
        "collecting flag) and one int64 step counter: O(units), not O(weights).",
        "",
    ]
    return "\n".join(lines)
