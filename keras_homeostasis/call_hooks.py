"""The hooks a `SynapticScalingCallback` puts on a model for one fit.

`CallHooks` wraps the scaled layers' `call` (the sensor), the model's `call`
(relaying its `training` flag to layers whose `call` has none, such as
Conv), the model's `train_step` / `test_step` / `predict_step` (so a layer
knows it runs in a training step even when Keras passes it no flag, as in
a subclassed model whose `call` does not forward `training`), and the
scaling constraints. `remove()` takes all of them off again; `install()`
puts the same wrappers back and, when the model's compiled train function
from the last install still fits (same compile, same settings), reuses it:
a second `fit` with the same callback neither re-traces nor recompiles.

A model that is not built when `fit` starts (a subclassed model, or a
Sequential model without an `Input`, which Keras builds in the first trace
of its train step) is bound there: the train-step wrapper builds it from
the batch's shapes, asks for its bindings, and wraps and constrains the
layers before the step runs, so the first step is already scaled. In a
custom loop the model's first call on data binds it the same way (Keras
has built it by then).

Keras 3.15 calls no callback when `fit` raises, so the hooks of an
interrupted fit are removed lazily: the first `make_train_function` after
`on_train_begin` that is not the hooks' own (a later `fit` or
`train_on_batch`) removes them before anything is traced.

Which layer calls count (first answer wins):
1. the layer's own `training` argument, when Keras passes one;
2. the `training` flag of the enclosing model call (absent: inference);
3. the Keras step in progress: `train_step` counts, `test_step` and
   `predict_step` do not;
4. otherwise (no flag known): nothing counts during `fit`; in a custom loop
   under `SynapticScalingCallback.attached`, layers whose `call` takes
   `training` do not count and the others (Conv) do.
"""

import functools
import inspect
import threading
import warnings

import keras
from keras import ops

from keras_homeostasis import engine
from keras_homeostasis import held_norms
from keras_homeostasis import layer_selection
from keras_homeostasis import sensor
from keras_homeostasis.unit_state import outside_any_trace

# The model call and the Keras step in progress on this thread. Replicas of
# a tf.distribute strategy trace on their own threads, steps included.
_context = threading.local()

_STEPS = {"train_step": True, "test_step": False, "predict_step": False}


class CallHooks:
    """The call wrappers and scaling constraints of one callback on one model.

    Args:
        model: the Keras model.
        bindings: `(layer, UnitState, settings)` triples, in optimizer order.
        lazy_removal: whether a foreign `make_train_function` call removes the
            hooks (a fit that raised); False in `SynapticScalingCallback.attached`.
        bind: for a model not built yet (`bindings` empty): called with the
            built model in the first train step, returns its bindings.
    """

    def __init__(self, model, bindings, lazy_removal=True, bind=None):
        self.model = model
        self.bindings = list(bindings)
        self.bind = bind
        self._binding = False
        self.lazy_removal = lazy_removal
        self.in_fit = lazy_removal
        self.active = False
        self.sensed = set()
        self._wrapped = []
        self._constraints = []
        self._make_train_function = None
        self._train_function = None
        self._compiled_for = None

    def serves(self, model, bindings, lazy_removal):
        """Whether these hooks can be installed again for this fit."""

        def identity(pairs):
            return [(id(layer), id(state), s) for layer, state, s in pairs]

        return (
            model is self.model
            and identity(bindings) == identity(self.bindings)
            and lazy_removal == self.lazy_removal
        )

    def install(self):
        self.active = True
        if self._wrapped:
            # The same wrapper objects as before: a retrace of the cached
            # train function (Keras retraces on a new input shape) finds them.
            for owner, name, wrapper in self._wrapped:
                object.__setattr__(owner, name, wrapper)
        else:
            self._wrap_all()
        if self.bindings:
            self._attach_constraints()
        # Otherwise the model is not built yet: Keras builds it in the first
        # trace of the train function made below, or at its first call in a
        # custom loop, and the wrappers bind it there (`_bind_in_first_step`,
        # the model-call wrapper).
        if same_compile(self._compiled_for, compile_key(self.model)):
            self.model.train_function = self._train_function
            return
        # Retrace so the compiled step contains the statistics and constraints.
        # Another callback's hooks below ours see this call as an install,
        # not as a later fit (which would remove them).
        _context.installing = True
        try:
            self._make_train_function(force=True)
        finally:
            _context.installing = False
        self._train_function = self.model.train_function
        self._compiled_for = compile_key(self.model)

    def _attach_constraints(self):
        states = [
            (state, settings, getattr(layer, "bias", None))
            for layer, state, settings in self.bindings
        ]
        self._constraints = engine.attach_constraints(
            self.bindings, engine.HomeostasisEngine(states, recorded=_recorded)
        )

    def _waits_for_binding(self):
        return not self.bindings and self.bind is not None and not self._binding

    def _bind_in_first_step(self, data):
        """Builds an unbuilt model from a batch's shapes, then binds it."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if not self.model.built:
            # A symbolic call builds every layer, as Keras' own deferred
            # build does, without running the model on the batch; outside
            # the step's trace, so the kernels have their values now.
            with outside_any_trace():
                self.model(keras.tree.map_structure(_symbolic, x))
        if self._waits_for_binding():  # The model's own call may have bound it.
            self._bind_built_model()

    def _bind_built_model(self):
        # Finding the output layers traces the model: that call must not
        # bind again.
        self._binding = True
        try:
            self.bindings = list(self.bind(self.model))
        finally:
            self._binding = False
        for layer, state, _ in self.bindings:
            self._wrap_layer(layer, state)
        self._attach_constraints()

    def _wrap_all(self):
        for name, is_train in _STEPS.items():
            self._wrap_step(name, is_train)
        self._wrap_make_train_function()
        self._wrap_model_call()
        for layer, state, _ in self.bindings:
            self._wrap_layer(layer, state)

    def remove(self):
        if not self.active:
            return
        self.active = False
        for owner, name, wrapper in reversed(self._wrapped):
            # A wrapper installed above ours (another callback) stays, and ours
            # below it passes calls through now that it is inactive.
            if vars(owner).get(name) is wrapper:
                object.__delattr__(owner, name)
        for variable, constraint in self._constraints:
            variable.constraint = constraint
        self._constraints = []
        # The train function traced with the hooks would keep counting and
        # scaling: retrace without them (it stays cached for a later install).
        # Test and predict steps never count, so their functions stay.
        if self.model.train_function is self._train_function:
            self.model.train_function = None

    def _set(self, owner, name, wrapper):
        wrapper.homeostasis_hooks = self
        object.__setattr__(owner, name, wrapper)
        self._wrapped.append((owner, name, wrapper))

    def _wrap_step(self, name, is_train):
        original = getattr(self.model, name)

        @functools.wraps(original)
        def step(*args, **kwargs):
            if not self.active:
                return original(*args, **kwargs)
            if is_train and self._waits_for_binding():
                self._bind_in_first_step(args[0] if args else kwargs["data"])
            outer = getattr(_context, "step", None)
            _context.step = is_train
            # The outermost train step records its layers' forward passes
            # for the engine, which runs later in the same step.
            records = is_train and _recorded() is None
            if records:
                _context.recorded = {}
            try:
                result = original(*args, **kwargs)
                if records:
                    _accumulate_unused(_context.recorded)
                return result
            finally:
                _context.step = outer
                if records:
                    _context.recorded = None

        self._set(self.model, name, step)

    def _wrap_make_train_function(self):
        original = self.model.make_train_function
        self._make_train_function = original

        @functools.wraps(original)
        def make_train_function(force=False):
            installing = getattr(_context, "installing", False)
            if self.active and self.lazy_removal and not installing:
                warnings.warn(
                    "SynapticScalingCallback: removing the hooks of a fit that "
                    "did not finish (it raised or was interrupted) before "
                    f"training model '{self.model.name}' again. To drive the "
                    "callback outside `fit`, use `with callback.attached(model):`.",
                    stacklevel=2,
                )
                self.remove()
            return original(force=force)

        self._set(self.model, "make_train_function", make_train_function)

    def _wrap_model_call(self):
        original = _unwrapped_call(self.model)
        takes_training = "training" in inspect.signature(original).parameters
        if not (takes_training or self._waits_for_binding()):
            return  # Keras gives this call no flag to relay.

        def call(*args, **kwargs):
            if not self.active:
                return original(*args, **kwargs)
            if self._waits_for_binding() and self.model.built:
                # A custom loop's first call on data (Keras builds the model
                # before calling `call`, its build call comes first and is
                # left alone): binding counts nothing.
                self._bind_built_model()
            if not takes_training:
                return original(*args, **kwargs)
            outer = getattr(_context, "training", None)
            # As in Keras, a call without `training` is an inference call.
            _context.training = bool(kwargs.get("training"))
            try:
                return original(*args, **kwargs)
            finally:
                _context.training = outer

        self._set(self.model, "call", call)

    def _wrap_layer(self, layer, state):
        original = _unwrapped_call(layer)
        axis = layer_selection.unit_axis(layer)
        takes_training = "training" in inspect.signature(original).parameters

        def call(*args, **kwargs):
            symbolic = _is_symbolic(args)
            counts = self.active and _counts(takes_training, kwargs, self.in_fit)
            if symbolic or not counts:
                return original(*args, **kwargs)
            self.sensed.add(id(layer))
            forward = functools.partial(original, *args, **kwargs)
            recorded = _recorded()
            target = state if recorded is None else _Recorder(state, recorded)
            if state.held is None:
                return _sensed_call(layer, state, target, axis, forward, args, kwargs)
            # The pass's kernel reads (the centered gradient's too) get the
            # direction vectors' gradient.
            kernel = state.held.direction_kernel(layer._kernel)
            forward = held_norms.computing_with(layer, kernel, forward)
            return _sensed_call(
                layer, state, target, axis, forward, args, kwargs, kernel
            )

        self._set(layer, "call", call)


def _sensed_call(layer, state, target, axis, forward, args, kwargs, kernel=None):
    """The layer's pass, sensed; for a centered layer (`center_inputs=True`)
    its inputs observed, the drives sensed from the centered bias, and the
    centered gradient passed (to `kernel`, default the layer's) where it is
    on."""
    centering = state.centering
    if centering is None:
        return sensor.sensed_call(layer, forward, target, axis)
    drive = centering.observe(args[0] if args else kwargs["inputs"], layer.kernel)
    # From the drive just computed, not read back: a read of the variable
    # that only the backward pass consumes raced its write (docs/design.md).
    bias = centering.centered_bias(layer.bias, drive)
    if not centering.centers_gradient:
        return sensor.sensed_call(layer, forward, target, axis, bias)

    kernel = layer.kernel if kernel is None else kernel

    def through(z):
        return centering.center_gradient(z, kernel)

    return sensor.sensed_call(layer, forward, target, axis, bias, through)


def _recorded():
    """The forward passes recorded in the train step traced on this thread
    (`{id(state): (state, [sensor arguments])}`), or None outside one."""
    return getattr(_context, "recorded", None)


class _Recorder:
    """Takes a sensed pass in place of `UnitState.accumulate`, for the
    engine to sum in the same step (no accumulator written per pass)."""

    def __init__(self, state, recorded):
        self.state = state
        self.recorded = recorded

    def accumulate(self, preactivation, outputs, bias=None, unit_axis=-1):
        # The bias as this pass saw it: the optimizer updates it before the
        # engine sums.
        if bias is not None:
            bias = ops.cast(bias, "float32")
        entry = self.recorded.setdefault(id(self.state), (self.state, []))
        entry[1].append((preactivation, outputs, bias, unit_axis))


def _accumulate_unused(recorded):
    """Adds passes no engine summed in their step (no constraint of theirs
    ran) to their accumulators, as an unrecorded pass would be."""
    for state, passes in recorded.values():
        for arguments in passes:
            state.accumulate(*arguments)
    recorded.clear()


def _is_symbolic(args):
    return any(keras.backend.is_keras_tensor(a) for a in keras.tree.flatten(args))


def _symbolic(tensor):
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    return keras.KerasTensor(tuple(tensor.shape), dtype=dtype)


def compile_key(model):
    """What a cached train function depends on besides the hooks.

    `compile()` makes a new `_compile_config`, so holding it (not its id)
    tells a recompiled model, as Keras' own `train_function = None` does.
    A custom loop may never compile the model: it has no optimizer then.
    """
    return (
        getattr(model, "_compile_config", None),
        getattr(model, "optimizer", None),
        getattr(model, "jit_compile", None),
        getattr(model, "steps_per_execution", None),
        model.distribute_strategy,
    )


def same_compile(old, new):
    """Whether two `compile_key`s are of the same compile (objects by identity)."""
    if old is None:
        return False
    return all(
        a is b or (isinstance(a, (bool, int, str)) and type(a) is type(b) and a == b)
        for a, b in zip(old, new)
    )


def _counts(takes_training, kwargs, in_fit):
    """Whether a layer call is a training pass (rules in the module docstring)."""
    training = kwargs.get("training") if takes_training else None
    if training is None:
        training = getattr(_context, "training", None)
    if training is None:
        training = getattr(_context, "step", None)
    if training is None:
        return not (takes_training or in_fit)
    return bool(training)


def _unwrapped_call(layer):
    """`layer.call` without an inactive wrapper left on it (a fit that raised)."""
    wrapper = vars(layer).get("call")
    hooks = getattr(wrapper, "homeostasis_hooks", None)
    if hooks is not None and not hooks.active:
        object.__delattr__(layer, "call")
    return layer.call
