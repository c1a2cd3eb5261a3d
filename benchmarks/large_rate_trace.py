"""Where a run at a large learning rate breaks: each layer's state per step.

Trains one method of `keras-homeostasis compare` (the small CNN or the MLP,
SGD with momentum 0.9, batch 128, the first `--limit` MNIST training images)
for `--steps` optimizer steps and prints, after each step, the loss and, for
every Dense/Conv layer, its kernel norm and the range of its bias. A layer
whose bias runs away while its kernel norm is held shows what homeostasis
does not bound at that rate.

    python benchmarks/large_rate_trace.py held_centered_scaling --lr 0.3
    python benchmarks/large_rate_trace.py batchnorm --lr 0.3
    python benchmarks/large_rate_trace.py held_centered_scaling --seed 1 \
        --layers hidden_1 hidden_2 hidden_3 output
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_homeostasis import SynapticScalingCallback  # noqa: E402
from keras_homeostasis.lab import models  # noqa: E402
from keras_homeostasis.lab.data import SHARED_MNIST  # noqa: E402
from keras_homeostasis.lab.data import load_dataset  # noqa: E402
from keras_homeostasis.weight_normalization import WeightNormalization  # noqa: E402


class LayerTrace(keras.callbacks.Callback):
    """Keeps, after each step, the loss and every kernel layer's norm and
    bias range (`rows`), and prints them when `verbose`."""

    def __init__(self, verbose=True):
        super().__init__()
        self.verbose = verbose
        self.rows = []

    def on_train_batch_end(self, batch, logs=None):
        row = {"step": batch + 1, "loss": float(logs["loss"]), "layers": {}}
        for layer in self.model.layers:
            weights = computed_weights(layer)
            if weights is None:
                continue
            kernel, bias = (keras.ops.convert_to_numpy(w) for w in weights)
            row["layers"][layer.name] = {
                "kernel_norm": float(np.linalg.norm(kernel)),
                "bias_min": float(bias.min()),
                "bias_max": float(bias.max()),
            }
        self.rows.append(row)
        if self.verbose:
            print(format_row(row), flush=True)


def computed_weights(layer):
    """The kernel and bias `layer` computes with (a homeostatic layer's
    `effective_kernel()`/`effective_bias()`, a weight-normalized layer's
    `g v / |v|`; a zero bias for a layer without one), or None for a layer
    without a kernel."""
    if hasattr(layer, "effective_kernel"):
        return layer.effective_kernel(), layer.effective_bias()
    if isinstance(layer, WeightNormalization):
        kernel, layer = layer.normalized_kernel(), layer.layer
    elif getattr(layer, "kernel", None) is not None:
        kernel = layer.kernel
    else:
        return None
    bias = layer.bias if layer.use_bias else np.zeros(1)
    return kernel, bias


def format_row(row):
    cells = [f"step {row['step']:3d}  loss {row['loss']:10.3g}"]
    for name, layer in row["layers"].items():
        cells.append(
            f"{name} |k| {layer['kernel_norm']:.3g} "
            f"b [{layer['bias_min']:.3g}, {layer['bias_max']:.3g}]"
        )
    return "  ".join(cells)


def trace(
    method,
    x,
    y,
    architecture="cnn",
    lr=0.3,
    steps=30,
    seed=0,
    layers=None,
    verbose=True,
):
    """Trains `method` for `steps` steps of batch 128 (SGD, momentum 0.9) on
    `x, y`; returns `LayerTrace.rows`. `layers`: the callback's `layers=`
    (None: its default, the hidden layers)."""
    keras.utils.set_random_seed(seed)
    model = models.build_model(architecture, method, x.shape[1:], 10)
    model.compile(
        keras.optimizers.SGD(lr, momentum=0.9), "sparse_categorical_crossentropy"
    )
    recorder = LayerTrace(verbose)
    callbacks = [recorder]
    if method in models.CALLBACK_METHODS:
        options = models.callback_options(method)
        callbacks.insert(0, SynapticScalingCallback(layers=layers, **options))
    steps = min(steps, len(x) // 128)
    model.fit(
        x,
        y,
        batch_size=128,
        epochs=1,
        steps_per_epoch=steps,
        verbose=0,
        callbacks=callbacks,
    )
    return recorder.rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", choices=models.NORMALIZATIONS)
    parser.add_argument("--architecture", choices=models.ARCHITECTURES, default="cnn")
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--limit", type=int, default=12000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=SHARED_MNIST)
    parser.add_argument(
        "--layers", nargs="+", help="the callback's layers= (default: hidden layers)"
    )
    args = parser.parse_args()

    (x, y), _ = load_dataset(args.data, limit=args.limit)
    trace(
        args.method,
        x,
        y,
        args.architecture,
        args.lr,
        args.steps,
        args.seed,
        args.layers,
    )


if __name__ == "__main__":
    main()
