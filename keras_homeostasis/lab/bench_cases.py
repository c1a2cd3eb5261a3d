"""What `keras-homeostasis bench` measures: models, variants, settings, cases.

Shared by the job (`bench`, `bench_timing`, `bench_memory`) and its tables
(`bench_report`). A case is one model at one batch size: the MLP of MNIST
shape (28x28x1 inputs flattened to 784, `depth` hidden ReLU layers of
`width` units, 10 classes) or the small CNN of `models.build_model` (its
widths are fixed, so `width` and `depth` are None).
"""

import collections

Case = collections.namedtuple("Case", "model width depth batch")

# The variants a bench runs by default; `--variants` picks from
# `ALL_VARIANTS` (`none`, the reference, is always run).
VARIANTS = (
    "none",
    "batchnorm",
    "layernorm",
    "held_centered_scaling",
    "scaling",
    "homeostatic_layers",
    "scale_invariant_layers",
)
ALL_VARIANTS = VARIANTS + (
    "centered_scaling",
    "centered_layers",
    "centered_scale_invariant_layers",
    "weightnorm",
    "unitnorm",
)
LABELS = {
    "none": "none",
    "batchnorm": "BatchNorm",
    "layernorm": "LayerNorm",
    "held_centered_scaling": "callback (defaults)",
    "scaling": "callback, rule alone",
    "centered_scaling": "centered callback",
    "homeostatic_layers": "homeostatic layers",
    "scale_invariant_layers": "scale-invariant layers",
    "centered_layers": "centered layers",
    "centered_scale_invariant_layers": "centered scale-invariant layers",
    "weightnorm": "WeightNormalization",
    "unitnorm": "UnitNorm constraint",
}
# What the homeostatic variants are measured beside: no normalization, the
# normalization layers, and the two ways of holding each unit's kernel norm
# (weight normalization in the forward pass; Keras' `UnitNorm` constraint
# after each step, the cheapest norm hold Keras ships).
REFERENCES = ("none", "batchnorm", "layernorm", "weightnorm", "unitnorm")
# The variants the overhead targets apply to: the callback and the layers,
# in each of their modes (`bench_report.verdict`).
HOMEOSTATIC = tuple(v for v in ALL_VARIANTS if v not in REFERENCES)


def chosen_variants(names=None):
    """`names` (default `VARIANTS`) in `ALL_VARIANTS` order, `none` first."""
    names = set(VARIANTS if names is None else names) | {"none"}
    unknown = names - set(ALL_VARIANTS)
    if unknown:
        raise ValueError(
            f"Unknown bench variants {sorted(unknown)}; expected some of "
            f"{list(ALL_VARIANTS)}"
        )
    return tuple(v for v in ALL_VARIANTS if v in names)


def online_variants(variants):
    """`variants` without BatchNormalization, which over a batch of one sample
    normalizes every unit to its offset: not a method anyone would train
    online with."""
    return tuple(v for v in variants if v != "batchnorm")


ONLINE_VARIANTS = online_variants(VARIANTS)

ONE_DEVICE = "one device"
ONE_DEVICE_XLA = "one device, XLA"
MIRRORED = "mirrored"
ONLINE = "online"
SETTINGS = (ONE_DEVICE, ONE_DEVICE_XLA, MIRRORED, ONLINE)
MEMORY = "memory"
# `--settings` names; `memory` is the peak-memory part, not a timing setting.
CLI_NAMES = {
    "one-device": ONE_DEVICE,
    "one-device-xla": ONE_DEVICE_XLA,
    "mirrored": MIRRORED,
    "online": ONLINE,
    "memory": MEMORY,
}
# Ratio targets of the callback and the layers (also: below BatchNorm's).
TARGETS = {ONE_DEVICE: 1.05, ONE_DEVICE_XLA: 1.05, MIRRORED: 1.05, ONLINE: 1.10}

INPUT_SHAPE = (28, 28, 1)
CLASSES = 10
HEADLINE = Case("mlp", 256, 3, 128)
WIDE = Case("mlp", 512, 3, 128)
CNN = Case("cnn", None, None, 128)
# Online training: one sample per step, many steps per compiled call.
ONLINE_CASE = Case("mlp", 100, 3, 1)
ONLINE_STEPS_PER_EXECUTION = 250
GROWTH = {
    "width": [Case("mlp", w, 3, 128) for w in (64, 256, 1024)],
    "depth": [Case("mlp", 256, d, 128) for d in (1, 3, 6)],
    "batch": [Case("mlp", 256, 3, b) for b in (32, 128, 512)],
}

# Rounds (fits per variant), epochs per fit, steps per epoch (batch settings)
# and steps per epoch online (a multiple of ONLINE_STEPS_PER_EXECUTION).
# `period`: the homeostatic variants' `period` setting.
QUICK = {"rounds": 3, "epochs": 4, "steps": 30, "online_steps": 1000, "period": 1}
FULL = {"rounds": 5, "epochs": 4, "steps": 150, "online_steps": 5000, "period": 1}


def cases(quick, online_depth=None):
    """`{setting: [Case, ...]}` of the quick run or of the full grid; the
    online MLP with `online_depth` hidden layers instead of 3 if given (on
    a CPU with XLA, a deeper online step can pass the number of ready
    kernels XLA keeps on one thread: docs/overhead.md)."""
    online = ONLINE_CASE
    if online_depth is not None:
        online = ONLINE_CASE._replace(depth=online_depth)
    if quick:
        return {
            ONE_DEVICE: [HEADLINE],
            ONE_DEVICE_XLA: [HEADLINE],
            MIRRORED: [HEADLINE],
            ONLINE: [online],
        }
    growth = [c for axis in GROWTH.values() for c in axis]
    one_device = list(dict.fromkeys([HEADLINE, WIDE, CNN, *growth]))
    return {
        ONE_DEVICE: one_device,
        ONE_DEVICE_XLA: [HEADLINE, WIDE, CNN],
        MIRRORED: [HEADLINE, WIDE, CNN],
        ONLINE: [online],
    }


def case_steps(case, steps):
    """Steps per epoch of `case`: the CNN's step costs several MLP steps on a
    CPU, so it runs a quarter of them (at least 2)."""
    return max(2, steps // 4) if case.model == "cnn" else steps


def case_label(case):
    """`MLP 784-256x3-10, batch 128` or `CNN 32-64-128, batch 128`."""
    if case.model == "cnn":
        return f"CNN 32-64-128, batch {case.batch}"
    return f"MLP 784-{case.width}x{case.depth}-10, batch {case.batch}"
