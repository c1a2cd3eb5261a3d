"""Each unit's kernel norm held between steps, at batch size 1 with large steps.

The setting of `configs/compare_online_lr.yaml` at lr 0.01 (MNIST MLP
784-256-256-10, SGD with momentum 0.9, one pass over the first 6,000
training images at batch size 1): where no normalization loses its units,
does holding each hidden unit's kernel norm fixed after every optimizer
step (a kernel constraint: what a rule acting between steps can do) train
as weight normalization does (`weightnorm_fixed_gain`: the norm held
inside the forward pass instead)? Prints one line per (variant, seed): test
accuracy and the hidden layers' dead fractions on the test set. Reproduces
the README's "Larger steps at batch size 1" paragraph.

    python benchmarks/norm_between_steps.py [--variants none held held_x2 held_x4
        weightnorm_fixed_gain]
        [--seeds 0 1] [--lr 0.01] [--examples 6000]

About 10 s per run on 2 CPU cores.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_homeostasis import WeightNormalization  # noqa: E402
from keras_homeostasis.lab.data import SHARED_MNIST  # noqa: E402

# variant: the held norm as a multiple of the initial one (None: not held).
HELD = {"none": None, "held": 1.0, "held_x2": 2.0, "held_x4": 4.0}
# Weight normalization with its gains frozen at the initial norms: the norm
# is held too, but inside the forward pass, where the gradient sees it.
VARIANTS = (*HELD, "weightnorm_fixed_gain")


class HeldNorm(keras.constraints.Constraint):
    """Puts each unit's (column's) incoming-weight norm back to `norms`."""

    def __init__(self, norms):
        self.norms = norms

    def __call__(self, w):
        current = ops.sqrt(ops.sum(ops.square(w), axis=0))
        return w * (self.norms / ops.maximum(current, 1e-12))


def load(path, examples):
    data = np.load(path)
    x_train = data["x_train"][:examples].reshape(-1, 784).astype("float32") / 255
    x_test = data["x_test"].reshape(-1, 784).astype("float32") / 255
    return (x_train, data["y_train"][:examples]), (x_test, data["y_test"])


def run(data, variant, seed, lr, hidden=(256, 256)):
    """Trains one network; returns test accuracy and each layer's dead fraction."""
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((x_train.shape[1],))
    x, layers = inputs, []
    for width in hidden:
        layer = keras.layers.Dense(width, activation="relu")
        if variant == "weightnorm_fixed_gain":
            layer = WeightNormalization(layer)
        layers.append(layer)
        x = layer(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    if variant == "weightnorm_fixed_gain":
        for layer in layers:
            layer.g.trainable = False
    multiple = HELD.get(variant)
    if multiple is not None:
        for layer in layers:
            norms = np.linalg.norm(layer.kernel.numpy(), axis=0) * multiple
            layer.kernel.constraint = HeldNorm(ops.convert_to_tensor(norms))
            layer.kernel.assign(HeldNorm(norms)(layer.kernel.numpy()))
    model.compile(
        keras.optimizers.SGD(lr, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=250,
    )
    model.fit(x_train, y_train, batch_size=1, epochs=1, shuffle=False, verbose=0)
    accuracy = model.evaluate(x_test, y_test, batch_size=500, verbose=0)[1]
    probe = keras.Model(inputs, [layer.output for layer in layers])
    outputs = probe.predict(x_test, batch_size=500, verbose=0)
    if len(layers) == 1:
        outputs = [outputs]
    dead = [float(np.mean(np.all(y <= 0, axis=0))) for y in outputs]
    # Each layer's mean kernel column norm (weight normalization: of `v`).
    kernels = [getattr(layer, "layer", layer).kernel.numpy() for layer in layers]
    norms = [float(np.linalg.norm(k, axis=0).mean()) for k in kernels]
    return {
        "variant": variant,
        "seed": seed,
        "accuracy": accuracy,
        "dead": dead,
        "norms": norms,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--examples", type=int, default=6000)
    parser.add_argument("--dataset", default=SHARED_MNIST)
    args = parser.parse_args()
    data = load(args.dataset, args.examples)
    for variant in args.variants:
        for seed in args.seeds:
            row = run(data, variant, seed, args.lr)
            dead = " / ".join(f"{d:.0%}" for d in row["dead"])
            norms = " / ".join(f"{n:.2f}" for n in row["norms"])
            print(
                f"{variant} seed {seed}: test accuracy {row['accuracy']:.4f}, "
                f"dead {dead}, mean kernel norm after the pass {norms}",
                flush=True,
            )


if __name__ == "__main__":
    main()
