"""What `keras-homeostasis bench` measures: its variants, settings and cases.

Shared by the job (`bench`) and its tables (`bench_report`), so neither
imports the other. A case is `(hidden width, depth, batch size)` of the MLP.
"""

VARIANTS = ("none", "batchnorm", "scaling", "homeostatic_layers")
LABELS = {
    "none": "(a) none",
    "batchnorm": "(b) BatchNorm",
    "scaling": "(c) scaling callback",
    "homeostatic_layers": "(d) homeostatic layers",
}
ONE_DEVICE = "one device"
ONE_DEVICE_XLA = "one device, XLA"
MIRRORED = "mirrored"
SETTINGS = (ONE_DEVICE, ONE_DEVICE_XLA, MIRRORED)
TARGETS = {ONE_DEVICE: 1.05, ONE_DEVICE_XLA: 1.05, MIRRORED: 1.10}
INPUT_DIM = 64
CLASSES = 10
# (width, depth, batch) of the headline rows.
HEADLINE = (256, 3, 128)
QUICK_CASES = {
    ONE_DEVICE: [HEADLINE, (64, 3, 128), (1024, 3, 128), (256, 3, 32), (256, 3, 512)],
    ONE_DEVICE_XLA: [HEADLINE],
    MIRRORED: [HEADLINE],
}
FULL_WIDTHS = (64, 256, 1024)
FULL_DEPTHS = (1, 3, 6)
FULL_BATCHES = (32, 128, 512)


def full_cases():
    """Every (width, depth, batch) of the full grid."""
    return [(w, d, b) for w in FULL_WIDTHS for d in FULL_DEPTHS for b in FULL_BATCHES]
