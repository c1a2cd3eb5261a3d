"""The callback on plain layers and the homeostatic layers are the same rule.

The comparison configs rely on this to leave `homeostatic_layers` out.
"""

import homeostasis_testing as ht
import keras
import numpy as np
import pytest

from keras_homeostasis import SynapticScalingCallback


def _kernels(model):
    return [
        np.array(layer.kernel.numpy())
        for layer in model.layers
        if hasattr(layer, "kernel")
    ]


def _assert_train_identically(kind, settings, **compile_kwargs):
    # The callback and each homeostatic layer step every layer on its own
    # vectors with the same operations: the weights and states agree to
    # the last bit. (When the callback stepped its layers' units joined,
    # vectorised `exp`/`log` rounded the last bit differently by position
    # and the layer means spread those bits: up to 1e-4 apart.)
    x, y = ht.noise(ht.INPUT_SHAPES[kind], n=128)
    plain = ht.compiled(ht.model_of(kind, seed=3), **compile_kwargs)
    homeostatic = ht.compiled(
        ht.model_of(kind, homeostatic=True, seed=3, **settings), **compile_kwargs
    )
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
    for a, b in zip(_kernels(plain), _kernels(homeostatic)):
        np.testing.assert_array_equal(a, b)
    plain_states = [s for _, s in ht.states(plain)]
    layer_states = [s for _, s in ht.states(homeostatic)]
    assert len(plain_states) == len(layer_states) == 2
    for a, b in zip(plain_states, layer_states):
        assert np.abs(a.log_gain.numpy()).max() > 0
        np.testing.assert_array_equal(a.log_gain.numpy(), b.log_gain.numpy())
        assert a.steps.numpy() == b.steps.numpy() == 8


@pytest.mark.parametrize(
    "period, extra", [(1, {}), (3, {}), (1, {"silence_evidence": 10.0})]
)
@pytest.mark.parametrize("kind", ["Dense", "Conv2D"])
def test_callback_and_layers_train_identically(kind, period, extra):
    settings = {"warmup": 0, "rate": 0.2, "period": period, **extra}
    _assert_train_identically(kind, settings)


@pytest.mark.parametrize("kind", ["Dense", "Conv2D"])
def test_callback_and_layers_train_identically_under_xla(kind):
    _assert_train_identically(kind, {"warmup": 0, "rate": 0.2}, jit_compile=True)


def test_gradient_accumulation_runs_the_rule_on_every_batch():
    # With `gradient_accumulation_steps`, Keras applies the constraints
    # after every batch, the optimizer's update on every N-th only: the rule
    # senses and scales every batch, and both paths stay the same rule.
    x, y = ht.noise(ht.INPUT_SHAPES["Dense"], n=128)
    settings = {"warmup": 0, "rate": 0.2}

    def accumulating(model):
        optimizer = keras.optimizers.SGD(
            0.01, momentum=0.9, gradient_accumulation_steps=2
        )
        return ht.compiled(model, optimizer=optimizer)

    plain = accumulating(ht.model_of("Dense", seed=3))
    homeostatic = accumulating(
        ht.model_of("Dense", homeostatic=True, seed=3, **settings)
    )
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
    assert int(plain.optimizer.iterations.numpy()) == 4
    for (_, a), (_, b) in zip(ht.states(plain), ht.states(homeostatic)):
        assert a.steps.numpy() == b.steps.numpy() == 8
        assert np.abs(a.log_gain.numpy()).max() > 0
        np.testing.assert_array_equal(a.log_gain.numpy(), b.log_gain.numpy())
    for a, b in zip(_kernels(plain), _kernels(homeostatic)):
        assert np.all(np.isfinite(a))
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("period", [1, 3])
def test_centered_callback_trains_dense_layers_as_the_centered_layers(period):
    # `center_inputs=True` on the callback: plain Dense layers whose biases
    # give back each kernel change at the input mean, and whose kernels get
    # the centered gradient, train as `HomeostaticDense(center_inputs=True)`
    # does; the plain bias is the centered layer's `effective_bias()`.
    x, y = ht.noise(ht.INPUT_SHAPES["Dense"], n=128)
    settings = {"warmup": 0, "rate": 0.2, "period": period}
    plain = ht.compiled(ht.model_of("Dense", seed=3))
    centered = ht.compiled(
        ht.model_of("Dense", homeostatic=True, seed=3, center_inputs=True, **settings)
    )
    fit = dict(epochs=2, batch_size=32, verbose=0, shuffle=False)
    callback = SynapticScalingCallback(center_inputs=True, **settings, hold_norms=False)
    plain.fit(x, y, callbacks=[callback], **fit)
    centered.fit(x, y, **fit)
    for a, b in zip(_kernels(plain), _kernels(centered)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    for name in ("hidden0", "hidden1"):
        layer = centered.get_layer(name)
        np.testing.assert_allclose(
            plain.get_layer(name).bias.numpy(),
            layer.effective_bias().numpy(),
            rtol=1e-4,
            atol=1e-4,
        )
        state = plain.get_layer(name).homeostasis
        np.testing.assert_allclose(
            state.log_gain.numpy(), layer.homeostasis.log_gain.numpy(), atol=1e-4
        )
        np.testing.assert_allclose(
            state.centering.input_mean.mean().numpy(),
            layer.input_mean.mean().numpy(),
            rtol=1e-5,
            atol=1e-6,
        )


HELD_OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(1.0),
    "momentum": lambda: keras.optimizers.SGD(0.1, momentum=0.9),
    "adam": lambda: keras.optimizers.Adam(0.01),
}


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize(
    "kind, centered, period",
    [("Dense", True, 1), ("Dense", True, 3), ("Dense", False, 1), ("Conv2D", False, 1)],
)
def test_callback_holding_norms_trains_as_the_scale_invariant_layers(
    kind, centered, period, optimizer
):
    # `hold_norms=True` on the callback: plain layers whose units' norms the
    # rule holds, whose optimizer gets the direction vectors' gradient and
    # whose steps are taken as the vectors' (`HeldNorms`), train as
    # `scale_invariant=True` layers do, under any optimizer.
    settings = {"warmup": 0, "rate": 0.2, "period": period}
    ht.assert_held_trains_as_the_layers(
        kind, HELD_OPTIMIZERS[optimizer], settings, center_inputs=centered
    )


def test_callback_holding_norms_relaxes_the_lengths_as_the_layers():
    # `norm_relaxation` on the callback holding norms: each unit's vector
    # length moves toward its gain as the scale-invariant layers' kernels do.
    settings = {"warmup": 0, "rate": 0.2}
    ht.assert_held_trains_as_the_layers(
        "Dense", HELD_OPTIMIZERS["sgd"], settings, norm_relaxation=0.05
    )


@pytest.mark.parametrize("kind", ["Dense", "Conv2D"])
def test_max_offset_bounds_the_callback_and_the_layers_alike(kind):
    # The bound moves a unit's bias by its whole spread error at once, where
    # intrinsic plasticity moves it by 3%: any last-bit difference between
    # the two paths would grow fast here (it reached 1e-4 on the Conv2D
    # model when the callback stepped its layers joined).
    x, y = ht.noise(ht.INPUT_SHAPES[kind], n=128)
    settings = {"warmup": 0, "rate": 0.2, "max_offset": 1.0}
    fit = dict(epochs=2, batch_size=32, verbose=0, shuffle=False)
    trained = {}
    for name, bound in (("unbounded", None), ("callback", 1.0)):
        model = ht.compiled(ht.model_of(kind, seed=3))
        callback = SynapticScalingCallback(
            **{**settings, "max_offset": bound}, center_inputs=False, hold_norms=False
        )
        model.fit(x, y, callbacks=[callback], **fit)
        trained[name] = _kernels(model)
    homeostatic = ht.compiled(ht.model_of(kind, homeostatic=True, seed=3, **settings))
    homeostatic.fit(x, y, **fit)
    for a, b in zip(trained["callback"], _kernels(homeostatic)):
        np.testing.assert_array_equal(a, b)
    moved = [np.max(np.abs(a - b)) for a, b in zip(*trained.values())]
    assert max(moved) > 1e-2  # the bound acted
