"""Tables of `keras-homeostasis bench` results: CSV rows and Markdown.

A timing row (one variant of one case in one setting) holds the case
(`setting`, `model`, `width`, `depth`, `batch`), `variant`, `steps` per
epoch and, from whole `fit` calls (see `bench_timing`):

- `step_ms`, `cpu_step_ms`: steady-state epoch wall / process CPU time per
  step (median over fits of the median of each fit's later epochs);
- `ratio_wall`, `ratio_cpu`: steady-state epoch time over that of `none` in
  the same round, median over rounds: the overhead users see;
- `first_epoch_s`, `first_epoch_cpu_s`: the first epoch of the first `fit`
  (tracing, compiling);
- `refit_first_epoch_s`: first epoch of the later `fit` calls (median);
- `refit_ratio_wall`, `refit_ratio_cpu`: whole later `fit` calls over those
  of `none`: what a loop of `fit` calls costs;
- `weights`, `extra_state`: float32 values of the trainable weights and of
  the homeostatic state or BatchNorm's moving statistics.

Memory rows (`bench_memory`) are written apart, to `bench_memory.csv`.
"""

import csv

from keras_homeostasis.lab.bench_cases import ALL_VARIANTS
from keras_homeostasis.lab.bench_cases import HEADLINE
from keras_homeostasis.lab.bench_cases import HOMEOSTATIC
from keras_homeostasis.lab.bench_cases import LABELS
from keras_homeostasis.lab.bench_cases import TARGETS
from keras_homeostasis.lab.bench_cases import Case
from keras_homeostasis.lab.bench_cases import case_label

CASE_FIELDS = ("setting", "model", "width", "depth", "batch")
FIELDS = CASE_FIELDS + (
    "variant",
    "steps",
    "step_ms",
    "cpu_step_ms",
    "ratio_wall",
    "ratio_cpu",
    "first_epoch_s",
    "first_epoch_cpu_s",
    "refit_first_epoch_s",
    "refit_ratio_wall",
    "refit_ratio_cpu",
    "weights",
    "extra_state",
)
MEMORY_FIELDS = CASE_FIELDS[1:] + (
    "variant",
    "peak_rss_mb",
    "fit_rss_growth_mb",
    "growth_vs_none_mb",
    "peak_scope",
    "device_peak_mb",
)


def others(rows):
    """The variants of `rows` but `none`, in `ALL_VARIANTS` order: the
    columns of the tables."""
    found = {row["variant"] for row in rows}
    return tuple(v for v in ALL_VARIANTS if v in found and v != "none")


def _write(rows, path, fields):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_csv(rows, path):
    _write(rows, path, FIELDS)


def write_memory_csv(rows, path):
    _write(rows, path, MEMORY_FIELDS)


def _case(row):
    return Case(*(row[k] for k in CASE_FIELDS[1:]))


def group(rows):
    """`{(setting, Case): {variant: row}}`, in first-seen order."""
    cases = {}
    for row in rows:
        cases.setdefault((row["setting"], _case(row)), {})[row["variant"]] = row
    return cases


def _table(header, lines):
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(str(c) for c in line) + " |" for line in lines]
    return out


def _pair(row, key="ratio"):
    """`1.031 / 1.047`: wall / CPU."""
    if row is None:
        return "n/a"
    return f"{row[key + '_wall']:.3f} / {row[key + '_cpu']:.3f}"


def verdict(setting, by):
    """Whether the callback and the layers meet the setting's target, in wall
    and CPU time, and stay below BatchNorm's ratio when it was measured."""
    target = TARGETS[setting]
    timed = [v for v in HOMEOSTATIC if v in by]
    if not timed:
        return f"<= {target:.2f}: no callback or layers timed"
    met = True
    for variant in timed:
        for key in ("ratio_wall", "ratio_cpu"):
            ratio = by[variant][key]
            met &= ratio <= target
            if "batchnorm" in by:
                met &= ratio < by["batchnorm"][key]
    text = f"<= {target:.2f}" + (", < BatchNorm" if "batchnorm" in by else "")
    return text + (": met" if met else ": **missed**")


def ratio_table(rows):
    """Steady-state epoch time of `none` and each variant's ratio to it."""
    columns = others(rows)
    header = ["setting", "model", "none ms/step"]
    header += [f"{LABELS[v]} wall / CPU" for v in columns] + ["target"]
    lines = []
    for (setting, case), by in group(rows).items():
        line = [setting, case_label(case), f"{by['none']['step_ms']:.2f}"]
        line += [_pair(by.get(v)) for v in columns]
        lines.append(line + [verdict(setting, by)])
    return _table(header, lines)


def first_epoch_table(rows):
    """First epoch of the first fit and of later fits, and later whole fits."""
    header = ["setting", "model", "variant", "first fit: 1st epoch s (CPU s)"]
    header += ["later fits: 1st epoch s", "later fits / none, wall / CPU"]
    lines = []
    for (setting, case), by in group(rows).items():
        for variant, row in by.items():
            lines.append(
                [
                    setting,
                    case_label(case),
                    LABELS[variant],
                    f"{row['first_epoch_s']:.2f} ({row['first_epoch_cpu_s']:.2f})",
                    f"{row['refit_first_epoch_s']:.2f}",
                    _pair(row, "refit_ratio"),
                ]
            )
    return _table(header, lines)


def growth_table(rows, axis):
    """Extra ms/step and ratios as `axis` (`width`, `depth` or `batch`) of the
    MLP grows, the other two at the headline values; empty unless a setting
    has two or more such cases."""
    groups = {}
    for (setting, case), by in group(rows).items():
        fixed = [k for k in ("width", "depth", "batch") if k != axis]
        if case.model == "mlp" and all(
            getattr(case, k) == getattr(HEADLINE, k) for k in fixed
        ):
            groups.setdefault(setting, []).append((case, by))
    columns = others(rows)
    homeostatic = [v for v in columns if v in HOMEOSTATIC]
    header = ["setting", axis, "none ms/step"]
    header += [f"{LABELS[v]} wall / CPU" for v in columns]
    header += [f"{LABELS[v]} +ms/step" for v in homeostatic]
    lines = []
    for setting, found in groups.items():
        if len(found) < 2:
            continue
        for case, by in sorted(found, key=lambda item: getattr(item[0], axis)):
            none_ms = by["none"]["step_ms"]
            line = [setting, getattr(case, axis), f"{none_ms:.2f}"]
            line += [_pair(by.get(v)) for v in columns]
            line += [_extra_ms(by.get(v), none_ms) for v in homeostatic]
            lines.append(line)
    return _table(header, lines) if lines else []


def _extra_ms(row, none_ms):
    return "n/a" if row is None else f"{row['step_ms'] - none_ms:+.3f}"


def state_table(rows):
    """Float32 values each variant adds, per model."""
    columns = others(rows)
    header = ["model", "weights (none)"] + [LABELS[v] for v in columns]
    seen = {}
    for (_, case), by in group(rows).items():
        if case in seen or "none" not in by:
            continue
        weights = by["none"]["weights"]
        cells = [
            f"{by[v]['weights'] - weights + by[v]['extra_state']:+d}"
            if v in by
            else "n/a"
            for v in columns
        ]
        seen[case] = [case_label(case), weights] + cells
    return _table(header, list(seen.values()))


def memory_table(memory):
    """Peak resident size during one fit (or of the process, where the peak
    could not be reset: marked), its growth, and the GPU's peak."""
    header = ["variant", "peak RSS MB", "fit's RSS growth MB", "vs none MB"]
    header += ["GPU peak MB"]
    lines = []
    for r in memory:
        mark = "" if r["peak_scope"] == "fit" else " (process)"
        gpu = r["device_peak_mb"]
        lines.append(
            [
                LABELS[r["variant"]],
                f"{r['peak_rss_mb']}{mark}",
                r["fit_rss_growth_mb"],
                f"{r['growth_vs_none_mb']:+.1f}",
                "n/a" if gpu == "" else gpu,
            ]
        )
    return _table(header, lines)


def headlines(rows):
    """One line per setting on its first case (the headline case of
    `bench_cases.cases`): the figures the README's overhead table quotes."""
    lines, seen = [], set()
    columns = others(rows)
    for (setting, case), by in group(rows).items():
        if setting in seen:
            continue
        seen.add(setting)
        ratios = ", ".join(f"{LABELS[v]} {_pair(by[v])}" for v in columns if v in by)
        lines.append(
            f"bench headline, {setting}, {case_label(case)}: steady-state epoch "
            f"time / none, wall / CPU: {ratios} (target {verdict(setting, by)})"
        )
    return lines


class Report:
    """The whole Markdown report, and the headline lines printed at the end."""

    def __init__(self, rows, memory, command, notes):
        self.rows, self.memory = rows, memory
        self.command, self.notes = command, notes

    def headlines(self):
        return headlines(self.rows)

    def markdown(self):
        lines = ["# keras-homeostasis bench", "", f"Command: `{self.command}`", ""]
        lines += [" ".join(self.notes), ""]
        if self.rows:
            lines += self._timing()
        if self.memory:
            lines += [f"## Peak memory of one fit, {case_label(HEADLINE)}", ""]
            lines += memory_table(self.memory) + [""]
        return "\n".join(lines)

    def _timing(self):
        lines = ["## Headline", ""] + [f"- {h}" for h in self.headlines()] + [""]
        lines += ["## Steady-state epoch time: ratio to none", ""]
        lines += ratio_table(self.rows) + [""]
        lines += ["## First epochs (tracing, compiling) and repeated fits", ""]
        lines += first_epoch_table(self.rows) + [""]
        for axis in ("width", "depth", "batch"):
            table = growth_table(self.rows, axis)
            if table:
                lines += [f"## Cost growth with {axis}", ""] + table + [""]
        lines += ["## Extra float32 values per model (weights and state)", ""]
        lines += state_table(self.rows) + [""]
        return lines
