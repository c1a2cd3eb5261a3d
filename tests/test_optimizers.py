"""The callback under every optimizer Keras ships, and the layers with it.

Each optimizer applies the scaling constraints once per update, so the rule
must act the same way whatever the update is: it counts one step per batch,
rescales, stays finite, and the callback and the homeostatic layers remain
the same rule.
"""

import inspect

import homeostasis_testing as ht
import keras
import numpy as np
import pytest

from keras_homeostasis import SynapticScalingCallback

# Wrappers, not optimizers of their own (LossScaleOptimizer is tested with
# mixed precision, tests/test_numerics.py).
WRAPPERS = {"LossScaleOptimizer", "MultiOptimizer", "Optimizer"}
OPTIMIZERS = sorted(
    name
    for name, cls in vars(keras.optimizers).items()
    if inspect.isclass(cls)
    and issubclass(cls, keras.optimizers.Optimizer)
    and name not in WRAPPERS
)


def optimizer(name, **kwargs):
    # Each optimizer's own default rate, except where it is too small to
    # move these weights in 8 steps (Adadelta's default rate is 0.001 with
    # unit-scale updates that start near 1e-3).
    if name == "Adadelta":
        kwargs.setdefault("learning_rate", 1.0)
    return getattr(keras.optimizers, name)(**kwargs)


def test_every_keras_optimizer_is_listed():
    # A guard for the list itself: the optimizers users reach for first.
    assert {"SGD", "Adam", "AdamW", "RMSprop", "Lion", "Nadam"} <= set(OPTIMIZERS)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_callback_and_layers_agree_under_every_optimizer(name):
    x, y = ht.noise(ht.INPUT_SHAPES["Dense"], n=128)
    _skip_unless_keras_trains_with(name, x, y)
    settings = {"warmup": 0, "rate": 0.2}
    plain = ht.compiled(ht.model_of("Dense", seed=0), optimizer=optimizer(name))
    homeostatic = ht.compiled(
        ht.model_of("Dense", homeostatic=True, seed=0, **settings),
        optimizer=optimizer(name),
    )
    before = _parameters(plain)
    fit = dict(epochs=2, batch_size=32, verbose=0, shuffle=False)
    plain.fit(
        x,
        y,
        callbacks=[
            SynapticScalingCallback(**settings, center_inputs=False, hold_norms=False)
        ],
        **fit,
    )
    homeostatic.fit(x, y, **fit)
    after = _parameters(plain)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    assert all(np.all(np.isfinite(w)) for w in after)
    for (_, a), (_, b) in zip(ht.states(plain), ht.states(homeostatic)):
        assert a.steps.numpy() == b.steps.numpy() == 8
        assert np.abs(a.log_gain.numpy()).max() > 0, "no unit was rescaled"
        np.testing.assert_allclose(
            a.log_gain.numpy(), b.log_gain.numpy(), rtol=1e-4, atol=1e-4
        )
    for a, b in zip(_parameters(plain), _parameters(homeostatic)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def _skip_unless_keras_trains_with(name, x, y):
    # Some Keras versions ship an optimizer that fails on its own (Keras
    # 3.11's Muon asks TensorFlow variables for a `path`): nothing to test.
    model = ht.compiled(ht.model_of("Dense", seed=0), optimizer=optimizer(name))
    try:
        loss = model.fit(x, y, batch_size=32, verbose=0).history["loss"][-1]
    except Exception as error:
        pytest.skip(f"Keras {keras.__version__}'s {name} fails alone: {error!r}")
    if not np.isfinite(loss):
        pytest.skip(f"Keras {keras.__version__}'s {name} diverges alone here")


def _parameters(model):
    # Kernels and biases only: the homeostatic layers also hold their state.
    return [np.array(v) for v in model.trainable_variables]


def test_weight_averaging_misses_only_the_last_rescale():
    # With `use_ema`, Keras averages the weights after each update and
    # before the constraints, and `fit` ends by swapping the average in. At
    # `ema_momentum=0` the average is the last update before its rescale:
    # the run without averaging, less its last factors (at most `max_step`).
    x, y = ht.noise(ht.INPUT_SHAPES["Dense"], n=128)
    kernels = []
    for ema in (False, True):
        sgd = keras.optimizers.SGD(0.05, use_ema=ema, ema_momentum=0.0)
        model = ht.compiled(ht.model_of("Dense", seed=0), optimizer=sgd)
        callback = SynapticScalingCallback(
            warmup=0, rate=0.2, center_inputs=False, hold_norms=False
        )
        model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[callback])
        kernels.append([np.array(layer.kernel) for layer, _ in callback.bindings])
        factors = [np.array(state.factor) for _, state in callback.bindings]
    for scaled, averaged, factor in zip(*kernels, factors):
        assert np.all(np.isfinite(averaged))
        assert np.abs(np.log(factor)).max() > 0
        np.testing.assert_allclose(averaged * factor, scaled, rtol=1e-5, atol=1e-6)


# Optimizers whose steps read the weights as well as the gradients: the
# held callback's kernels and the scale-invariant layers' vectors differ in
# length, so they train close to each other, not the same.
READS_THE_WEIGHTS = {"AdamW", "Muon", "Lamb", "Adafactor"}
# Optimizers that set the weights from state of their own: refused.
SETS_THE_WEIGHTS = {"Ftrl", "ScheduleFreeAdamW"}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_held_callback_trains_as_the_layers_under_every_optimizer(name):
    x, y = ht.noise(ht.INPUT_SHAPES["Dense"], n=128)
    _skip_unless_keras_trains_with(name, x, y)
    settings = {"warmup": 0, "rate": 0.2}
    if name in SETS_THE_WEIGHTS:
        model = ht.compiled(ht.model_of("Dense", seed=0), optimizer=optimizer(name))
        callback = SynapticScalingCallback(
            hold_norms=True, **settings, center_inputs=False
        )
        with pytest.raises(ValueError, match=f"optimizer={name}"):
            model.fit(x, y, batch_size=32, verbose=0, callbacks=[callback])
        return
    gaps = ht.held_and_layers_gaps(
        "Dense", lambda: optimizer(name), settings, center_inputs=True
    )
    exact = max(gaps["kernel"], gaps["log_gain"]) <= 5e-5 and gaps["length"] <= 1e-5
    if name in READS_THE_WEIGHTS:
        # Close, and not the same.
        assert max(gaps.values()) <= 1e-3 and not exact, gaps
    else:
        assert exact, gaps


def test_a_wrapped_optimizer_that_sets_the_weights_is_refused():
    x, y = ht.noise(ht.INPUT_SHAPES["Dense"], n=64)
    wrapped = keras.optimizers.LossScaleOptimizer(keras.optimizers.Ftrl())
    model = ht.compiled(ht.model_of("Dense", seed=0), optimizer=wrapped)
    callback = SynapticScalingCallback(hold_norms=True, center_inputs=False)
    with pytest.raises(ValueError, match="optimizer=Ftrl"):
        model.fit(x, y, batch_size=32, verbose=0, callbacks=[callback])
    # Nothing was hooked: the model trains on without the callback.
    model.fit(x, y, batch_size=32, verbose=0)
