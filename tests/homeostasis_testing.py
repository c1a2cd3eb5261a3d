"""Tiny real models, real data and state snapshots shared by the core tests.

Every builder seeds Keras first, so two calls give bit-identical models. The
data are the scikit-learn digits (bundled with scikit-learn, no download) or
seeded uniform noise; a few hundred samples keep each `fit` under a second.
"""

import functools
import importlib.util

import keras
import numpy as np

import keras_homeostasis.layers
from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis import layer_selection
from keras_homeostasis.unit_state import UnitState


def load_script(path):
    """The module of a script outside the package (benchmarks, docs, tutorials)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

# `SynapticScalingCallback`'s options for the rule alone, which its defaults
# (inputs centered, norms held) go beyond: the homeostatic layers' defaults.
RULE_ALONE = {"center_inputs": False, "hold_norms": False}
# The rule alone with gain bounds, scaling from the first step and moving
# every unit visibly: what the rule does to each layer and model kind (its
# factors); the callback's defaults are checked beside it.
FAST = dict(
    warmup=0,
    momentum=0.0,
    rate=0.5,
    max_step=0.1,
    min_gain=0.1,
    max_gain=10.0,
    **RULE_ALONE,
)

# Input shape of each layer kind's tiny model (channels_last).
INPUT_SHAPES = {
    "Dense": (8,),
    "Conv1D": (8, 2),
    "Conv2D": (6, 6, 1),
    "Conv3D": (4, 4, 4, 1),
}


@functools.lru_cache(maxsize=None)
def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype("float32"), d.target.astype("int32")


def digits(n=256):
    """The first `n` scikit-learn digits as `(images (n, 8, 8), labels (n,))`."""
    x, y = _digits()
    return x[:n], y[:n]


def noise(shape, n=256, classes=3, seed=0):
    """Seeded uniform inputs of `shape` with random integer labels."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, *shape)).astype("float32")
    y = rng.integers(0, classes, n).astype("int32")
    return x, y


def hidden_layer(kind, units, homeostatic=False, **kwargs):
    """A ReLU hidden layer of `kind` (Dense/Conv1D/2D/3D), plain or homeostatic."""
    if homeostatic:
        cls = getattr(keras_homeostasis.layers, "Homeostatic" + kind)
    else:
        cls = getattr(keras.layers, kind)
    if kind == "Dense":
        return cls(units, activation="relu", **kwargs)
    return cls(units, 2, activation="relu", **kwargs)


def model_of(
    kind,
    hidden=(6, 5),
    classes=3,
    functional=False,
    homeostatic=False,
    seed=0,
    names=None,
    **layer_kwargs,
):
    """A small classifier: `hidden` layers of `kind`, then Dense(`classes`)."""
    keras.utils.set_random_seed(seed)
    names = names or [f"hidden{i}" for i in range(len(hidden))]
    layers = [
        hidden_layer(kind, units, homeostatic, name=name, **layer_kwargs)
        for units, name in zip(hidden, names)
    ]
    if kind != "Dense":
        layers.append(keras.layers.Flatten(name="flatten"))
    layers.append(keras.layers.Dense(classes, name="output"))
    inputs = keras.Input(INPUT_SHAPES[kind])
    if not functional:
        return keras.Sequential([inputs, *layers], name=f"{kind.lower()}_seq")
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name=f"{kind.lower()}_functional")


def compiled(model, optimizer=None, **compile_kwargs):
    """`model`, compiled for classification with Adam unless told otherwise."""
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(1e-2),
        loss=LOSS,
        **compile_kwargs,
    )
    return model


def all_layers(model):
    """Every layer of `model`, nested models included (the library's walk)."""
    return layer_selection.all_layers(model)


def states(model):
    """`(layer, UnitState)` of every layer carrying homeostatic state."""
    found = []
    for layer in all_layers(model):
        state = getattr(layer, "homeostasis", None)
        if isinstance(state, UnitState):
            found.append((layer, state))
    return found


def state_arrays(state):
    """A UnitState's variables as `{name: numpy array}`."""
    return state.numpy_values()


def snapshot(model, optimizer=True):
    """Every variable of `model`, its homeostatic states and its optimizer.

    Returns `{key: numpy array}` with keys that do not depend on the model's
    auto-generated name, so snapshots of two separately built models compare.
    """
    out = {}
    for i, v in enumerate(model.variables):
        out[f"model/{i}/{v.name}"] = np.array(v.numpy())
    for layer, state in states(model):
        for name, value in state_arrays(state).items():
            out[f"{layer.name}/homeostasis/{name}"] = value
    if optimizer and model.optimizer is not None and model.optimizer.built:
        for i, v in enumerate(model.optimizer.variables):
            out[f"optimizer/{i}"] = np.array(v.numpy())
    return out


def assert_bit_equal(a, b):
    """Two snapshots hold the same keys and bit-identical arrays."""
    assert sorted(a) == sorted(b), f"keys differ: {sorted(set(a) ^ set(b))}"
    differ = [k for k in a if not np.array_equal(a[k], b[k], equal_nan=True)]
    assert not differ, f"variables differ: {differ}"


def assert_close(a, b, atol, rtol=1e-6):
    """Two snapshots hold the same keys and arrays within `atol + rtol |b|`."""
    assert sorted(a) == sorted(b), f"keys differ: {sorted(set(a) ^ set(b))}"
    worst = {
        k: float(np.max(np.abs(a[k].astype("float64") - b[k]) - rtol * np.abs(b[k])))
        for k in a
        if a[k].size
    }
    bad = {k: d for k, d in worst.items() if not d <= atol}
    assert not bad, f"variables differ by more than {atol}: {bad}"


def held_and_layers_gaps(kind, make_optimizer, settings, **options):
    """Trains plain layers under the callback holding norms and the
    scale-invariant layers with `options` (`center_inputs`,
    `norm_relaxation`), each with an optimizer from `make_optimizer()`;
    returns the largest gaps between them: `kernel` and `log_gain`
    (absolute; the layers' kernel is their `effective_kernel()`) and
    `length` (relative) over both hidden layers."""
    x, y = noise(INPUT_SHAPES[kind], n=128)
    plain = compiled(model_of(kind, seed=3), make_optimizer())
    layers = compiled(
        model_of(
            kind, homeostatic=True, seed=3, scale_invariant=True, **options, **settings
        ),
        make_optimizer(),
    )
    fit = dict(epochs=3, batch_size=32, verbose=0, shuffle=False)
    options = {"center_inputs": False, **options}
    callback = SynapticScalingCallback(hold_norms=True, **options, **settings)
    plain.fit(x, y, callbacks=[callback], **fit)
    layers.fit(x, y, **fit)
    gaps = {"kernel": 0.0, "log_gain": 0.0, "length": 0.0}
    for name in ("hidden0", "hidden1"):
        held, layer = plain.get_layer(name), layers.get_layer(name)
        state = held.homeostasis
        vectors = layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1])
        lengths = np.linalg.norm(vectors, axis=0)
        now = {
            "kernel": held.kernel.numpy() - layer.effective_kernel().numpy(),
            "log_gain": state.log_gain.numpy() - layer.homeostasis.log_gain.numpy(),
            "length": (state.held.length.numpy() - lengths) / lengths,
        }
        for key, gap in now.items():
            gaps[key] = max(gaps[key], float(np.max(np.abs(gap))))
    return gaps


def assert_held_trains_as_the_layers(
    kind, make_optimizer, settings, atol=5e-5, rtol=1e-5, **options
):
    """`held_and_layers_gaps` within `atol` (kernels and gains) and `rtol`
    (vector lengths)."""
    gaps = held_and_layers_gaps(kind, make_optimizer, settings, **options)
    assert gaps["kernel"] <= atol and gaps["log_gain"] <= atol, gaps
    assert gaps["length"] <= rtol, gaps
