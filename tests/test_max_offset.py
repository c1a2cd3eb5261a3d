"""`max_offset`: a unit its bias silenced fires again within one step."""

import keras
import numpy as np
import pytest
from homeostasis_testing import INPUT_SHAPES
from homeostasis_testing import compiled
from homeostasis_testing import model_of
from homeostasis_testing import noise

from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis.layers import HomeostaticDense

# Only the rule moves the weights: the optimizer's learning rate is 0.
SETTINGS = dict(warmup=0, momentum=0.0)


def silenced_model(kind):
    """`model_of(kind)` with the first hidden unit's bias far below its
    drive: it fires on no input."""
    model = compiled(model_of(kind, seed=1), keras.optimizers.SGD(0.0))
    layer = model.get_layer("hidden0")
    bias = layer.bias.numpy()
    bias[0] = -50.0
    layer.bias.assign(bias)
    return model


def firing_rates(model, x):
    """Each unit of the first hidden layer: the share of its values > 0."""
    probe = keras.Model(model.inputs, model.get_layer("hidden0").output)
    z = probe.predict(x, verbose=0)
    return (z.reshape(-1, z.shape[-1]) > 0).mean(axis=0)


@pytest.mark.parametrize("kind", ["Dense", "Conv2D"])
def test_a_silenced_unit_fires_again_within_one_step(kind):
    x, y = noise(INPUT_SHAPES[kind], n=32)
    fit = dict(batch_size=32, epochs=1, shuffle=False, verbose=0)
    rates = {}
    for bound in (None, 1.0):
        model = silenced_model(kind)
        assert firing_rates(model, x)[0] == 0.0
        callback = SynapticScalingCallback(max_offset=bound, **SETTINGS)
        model.fit(x, y, callbacks=[callback], **fit)
        rates[bound] = firing_rates(model, x)
    # Bounded, it fires on about Phi(-1) = 16% of its values or more.
    assert rates[1.0][0] > 0.1
    assert np.all(rates[1.0] > 0.1) and np.all(rates[1.0] < 0.9)
    # Intrinsic plasticity alone moves its bias by 3% of the error per step.
    assert rates[None][0] == 0.0


def test_homeostatic_layers_take_max_offset_and_save_it():
    layer = HomeostaticDense(4, max_offset=2.0)
    assert layer.homeostasis_settings["max_offset"] == 2.0
    assert HomeostaticDense.from_config(layer.get_config()).max_offset == 2.0
    with pytest.raises(ValueError, match="max_offset=0"):
        HomeostaticDense(4, max_offset=0)
