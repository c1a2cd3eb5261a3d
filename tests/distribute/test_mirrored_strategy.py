"""MirroredStrategy over two logical CPUs: replicas stay bit-identical.

Each replica gets its own half of every global batch (a distributed dataset
shards it), so without the engine's all-reduce the replicas' statistics, and
then their kernels, would drift apart.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis.layers import HomeostaticConv2D
from keras_homeostasis.layers import HomeostaticDense
from keras_homeostasis.unit_state import UnitState

pytestmark = pytest.mark.multi_device

FAST = dict(warmup=0, momentum=0.5, rate=0.5, max_step=0.1)
GLOBAL_BATCH = 32


def digits(n=128):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:n, :, :, None] / 16.0).astype("float32")
    return x, d.target[:n].astype("int32")


def dataset():
    return tf.data.Dataset.from_tensor_slices(digits()).batch(GLOBAL_BATCH)


def build(homeostatic, settings=FAST, conv_bias=True):
    keras.utils.set_random_seed(0)
    conv = HomeostaticConv2D if homeostatic else keras.layers.Conv2D
    dense = HomeostaticDense if homeostatic else keras.layers.Dense
    settings = settings if homeostatic else {}
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            conv(4, 3, activation="relu", name="conv", use_bias=conv_bias, **settings),
            keras.layers.Flatten(),
            dense(8, activation="relu", name="hidden", **settings),
            keras.layers.Dense(10, name="output"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def train(homeostatic, strategy=None, settings=FAST, **build_options):
    """A model trained 2 epochs, under `strategy` if given."""
    if strategy is None:
        model = build(homeostatic, settings, **build_options)
    else:
        with strategy.scope():
            model = build(homeostatic, settings, **build_options)
    callbacks = [] if homeostatic else [SynapticScalingCallback(**settings)]
    model.fit(dataset(), epochs=2, shuffle=False, verbose=0, callbacks=callbacks)
    return model


def tracked(model):
    """`{name: variable}` of every model variable and homeostatic state."""
    out = {f"{i}/{v.name}": v for i, v in enumerate(model.variables)}
    for layer in model.layers:
        state = getattr(layer, "homeostasis", None)
        if isinstance(state, UnitState):
            out.update({f"{layer.name}/state/{v.name}": v for v in state.variables})
    return out


def replica_copies(variable):
    """The per-device copies of a Keras variable created under a strategy."""
    return [np.array(copy.numpy()) for copy in variable.value.values]


@pytest.fixture
def strategy():
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.mark.parametrize("period", [1, 3])
@pytest.mark.parametrize(
    "homeostatic", [False, True], ids=["callback", "homeostatic_layers"]
)
def test_replicas_stay_bit_identical_and_match_one_device(
    strategy, homeostatic, period
):
    settings = {**FAST, "period": period}
    model = train(homeostatic, strategy, settings)
    single = train(homeostatic, settings=settings)
    variables, reference = tracked(model), tracked(single)
    assert sorted(variables) == sorted(reference)
    # Two layers' states: accumulator, traces, steps, collecting each.
    assert sum("/state/" in k for k in variables) >= 8
    for name, variable in variables.items():
        first, second = replica_copies(variable)
        np.testing.assert_array_equal(first, second, err_msg=name)
        expected = reference[name].numpy()
        if name.endswith("steps"):
            assert int(first) == int(expected) == 8, name
        else:
            np.testing.assert_allclose(first, expected, atol=2e-5, err_msg=name)
    log_gain = model.get_layer("conv").homeostasis.log_gain.numpy()
    assert np.any(np.abs(log_gain) > 0.05)


def test_saved_under_the_strategy_loads_and_evaluates_outside(strategy, tmp_path):
    model = train(True, strategy)
    path = tmp_path / "mirrored.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x, y = digits()
    for name, variable in tracked(loaded).items():
        np.testing.assert_array_equal(
            variable.numpy(), replica_copies(tracked(model)[name])[0], err_msg=name
        )
    expected = model.evaluate(x, y, verbose=0)
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-6)


def trained_like_one_device(strategy, settings, homeostatic=True, **build_options):
    """The model (of homeostatic layers, or plain ones with the callback)
    trained under `strategy`, every variable the same on both replicas and
    as trained on one device."""
    model = train(homeostatic, strategy, settings, **build_options)
    single = train(homeostatic, settings=settings, **build_options)
    variables, reference = tracked(model), tracked(single)
    for name, variable in variables.items():
        first, second = replica_copies(variable)
        np.testing.assert_array_equal(first, second, err_msg=name)
        expected = reference[name].numpy()
        np.testing.assert_allclose(first, expected, atol=2e-5, err_msg=name)
    return model


def test_scale_invariant_layers_stay_bit_identical_across_replicas(strategy):
    settings = {**FAST, "scale_invariant": True, "norm_relaxation": 0.01}
    layer = trained_like_one_device(strategy, settings).get_layer("hidden")
    assert layer.scale_invariant and int(layer.homeostasis.steps.numpy()) == 8


@pytest.mark.parametrize("scale_invariant", [False, True])
def test_centered_layers_stay_bit_identical_across_replicas(strategy, scale_invariant):
    # Each replica sees half of every batch: only the all-reduced input sums
    # give both replicas the same mean to center on, and the same bias move.
    settings = {**FAST, "center_inputs": True, "scale_invariant": scale_invariant}
    layer = trained_like_one_device(strategy, settings).get_layer("hidden")
    assert layer.center_inputs and float(layer.input_mean.steps.numpy()) == 8


def test_centered_callback_stays_bit_identical_across_replicas(strategy):
    # The callback's input-mean traces and the biases holding each unit's
    # offset at them: the same on both replicas, as on one device.
    settings = {**FAST, "center_inputs": True}
    model = trained_like_one_device(strategy, settings, homeostatic=False)
    layer = model.get_layer("hidden")
    centering = layer.homeostasis.centering
    assert float(centering.input_mean.steps.numpy()) == 8
    assert np.any(np.abs(centering.drive.numpy()) > 0)


def test_a_callback_mixing_modes_stays_bit_identical_across_replicas(strategy):
    # A convolution without a bias takes hold_norms but not center_inputs
    # (`layer_modes`): both layers' states still step in one all-reduce.
    settings = {**FAST, "hold_norms": True, "center_inputs": True}
    with pytest.warns(UserWarning, match="layer 'conv' has none"):
        model = trained_like_one_device(
            strategy, settings, homeostatic=False, conv_bias=False
        )
    conv, hidden = (model.get_layer(n).homeostasis for n in ("conv", "hidden"))
    assert conv.centering is None and conv.held is not None
    assert hidden.centering is not None and hidden.held is not None
    assert int(conv.steps.numpy()) == int(hidden.steps.numpy()) == 8


@pytest.mark.parametrize("center_inputs", [False, True])
def test_callback_holding_norms_stays_bit_identical_across_replicas(
    strategy, center_inputs
):
    # Each unit's norm put back to its gain after every step: the same
    # gains, so the same kernels, on both replicas, as on one device.
    settings = {**FAST, "hold_norms": True, "center_inputs": center_inputs}
    model = trained_like_one_device(strategy, settings, homeostatic=False)
    layer = model.get_layer("hidden")
    norms = np.linalg.norm(layer.kernel.numpy(), axis=0)
    np.testing.assert_allclose(
        norms, np.exp(layer.homeostasis.log_gain.numpy()), rtol=1e-5
    )


def test_a_callback_bounding_offsets_stays_bit_identical_across_replicas(strategy):
    # `max_offset` moves a unit's bias by its whole offset error in one
    # step: computed from the all-reduced statistics, the same on both
    # replicas, as on one device.
    settings = {**FAST, "hold_norms": True, "center_inputs": True}
    bounded = trained_like_one_device(
        strategy, {**settings, "max_offset": 0.5}, homeostatic=False
    )
    unbounded = train(False, strategy, settings)
    conv = [m.get_layer("conv").bias.numpy() for m in (bounded, unbounded)]
    assert np.max(np.abs(conv[0] - conv[1])) > 1e-2  # the bound acted
