"""Compatibility fixes for `model.fit` under tf.distribute in Keras 3.11-3.15.

Keras 3.15's own `fit` cannot train under `tf.distribute.MultiWorkerMirroredStrategy`
with more than one worker. It fails in two places, whatever the model:

1. `keras-team/keras#20585`: before the first step, `fit` builds the model
   symbolically from one batch. It averages that batch over all replicas with
   `strategy.reduce("MEAN", batch, axis=None)`, which converts a `PerReplica`
   value eagerly and raises "Attempt to convert a value (PerReplica: ...) with
   an unsupported type". Only the batch's shapes and dtypes are needed there.
2. `tensorflow/tensorflow#72388`: each step's logs (scalar metric results)
   are averaged across workers with `strategy.reduce("MEAN", value, axis=0)`,
   which fails on scalars: "Invalid reduction dimension 0 for input with 0
   dimensions".

`enable_multi_worker_fit()` fixes both, with the smallest change that works:

1. The symbolic build takes the first local replica's batch (same shapes and
   dtypes as the average, and no cross-worker collective outside the train
   function, where workers could deadlock).
2. Scalars are reduced with `axis=None` (a plain all-reduce of the value
   across replicas); every other value goes to Keras unchanged.

Both are patches of Keras internals (there is no public hook for either),
kept in this one module: `TensorFlowTrainer._maybe_symbolic_build` and the
module function `reduce_per_replica` of Keras' TensorFlow trainer. The
replacements delegate to the originals except in a multi-worker strategy, so
single-process training is untouched. They are applied only for Keras
3.11-3.15 (`PATCHED_KERAS`): the two functions have the same source in each
of these releases, and the data iterator yields the `(step, step_end,
batches)` triples the patch reads. Older releases iterate differently and
newer ones are unknown, so on any other version `enable_multi_worker_fit()`
warns once and patches nothing: an upgrade can never run these patches
against code they were not written for. Re-check the two issues when a new
Keras is released, then widen `PATCHED_KERAS`.

The module also guards a third Keras limit: `steps_per_execution > 1`
under a multi-replica `MirroredStrategy` (or multi-worker strategy) crashes
in Keras itself ("You must feed a value for placeholder tensor ...",
`keras-team/keras#19246`, present in Keras 3.11 to 3.15:
`STEPS_PER_EXECUTION_KERAS`). `check_steps_per_execution(model)` raises a
clear error naming the issue instead; on other versions it lets Keras try.
"""

import importlib
import re
import warnings

import keras
import tensorflow as tf

# The Keras releases (first and last `(major, minor)`) whose trainer internals
# the patches below were written for; the same source in each.
PATCHED_KERAS = ((3, 11), (3, 15))
# The Keras releases on which `steps_per_execution > 1` crashes under several
# replicas (keras-team/keras#19246): every supported one up to the newest checked.
STEPS_PER_EXECUTION_KERAS = ((3, 11), (3, 15))

STEPS_PER_EXECUTION_ISSUE = "https://github.com/keras-team/keras/issues/19246"

_TRAINER_MODULE = "keras.src.backend.tensorflow.trainer"
_originals = {}
_warned = set()


def release(version):
    """`(major, minor)` of a version string such as "3.15.1", or None."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else None


def _within(version, bounds):
    found = release(keras.__version__ if version is None else version)
    return found is not None and bounds[0] <= found <= bounds[1]


def needs_patch(version=None):
    """True for the Keras versions whose `fit` the multi-worker fixes are for."""
    return _within(version, PATCHED_KERAS)


def crashes_on_steps_per_execution(version=None):
    """True for the Keras versions known to have keras-team/keras#19246."""
    return _within(version, STEPS_PER_EXECUTION_KERAS)


def _warn_not_patched():
    # Once per process: every worker and every fit would repeat it otherwise.
    if keras.__version__ in _warned:
        return
    _warned.add(keras.__version__)
    first, last = (".".join(map(str, bound)) for bound in PATCHED_KERAS)
    warnings.warn(
        "keras_homeostasis.distribute_compat: the multi-worker `fit` fixes are "
        f"written for Keras {first}-{last} and are not applied to Keras "
        f"{keras.__version__}; `fit` under MultiWorkerMirroredStrategy runs on "
        "Keras' own code (keras-team/keras#20585, tensorflow/tensorflow#72388 "
        "may make it fail).",
        UserWarning,
        stacklevel=3,
    )


def is_multi_worker(strategy):
    """True when `strategy` spans replicas in more than one process."""
    if strategy is None or not isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ):
        return False
    local = len(strategy.extended.worker_devices)
    return strategy.num_replicas_in_sync > local


def _trainer_module():
    # A Keras internal: see the module docstring for why it cannot be avoided.
    return importlib.import_module(_TRAINER_MODULE)


def _first_local(value, strategy):
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def _patched_maybe_symbolic_build(self, iterator=None, data_batch=None):
    original = _originals["_maybe_symbolic_build"]
    strategy = self._distribute_strategy
    if iterator is None or not is_multi_worker(strategy):
        return original(self, iterator=iterator, data_batch=data_batch)
    for _, _, batches in iterator:
        batch = next(batches)
        data_batch = tf.nest.map_structure(lambda v: _first_local(v, strategy), batch)
        break
    return original(self, data_batch=data_batch)


def _patched_reduce_per_replica(values, strategy, reduction):
    original = _originals["reduce_per_replica"]
    if reduction not in ("auto", "mean") or not is_multi_worker(strategy):
        return original(values, strategy, reduction)

    def reduce(value):
        if isinstance(value, tf.distribute.DistributedValues) or isinstance(
            value, tf.Tensor
        ):
            if value.shape.rank == 0:
                return strategy.reduce("MEAN", value, axis=None)
        return original(value, strategy, reduction)

    return tf.nest.map_structure(reduce, values)


def _install():
    module = _trainer_module()
    trainer = module.TensorFlowTrainer
    _originals["_maybe_symbolic_build"] = trainer._maybe_symbolic_build
    _originals["reduce_per_replica"] = module.reduce_per_replica
    trainer._maybe_symbolic_build = _patched_maybe_symbolic_build
    module.reduce_per_replica = _patched_reduce_per_replica


def _uninstall():
    module = _trainer_module()
    module.TensorFlowTrainer._maybe_symbolic_build = _originals.pop(
        "_maybe_symbolic_build"
    )
    module.reduce_per_replica = _originals.pop("reduce_per_replica")


def is_enabled():
    """True while the multi-worker fixes are installed."""
    return bool(_originals)


def enable_multi_worker_fit():
    """Lets Keras 3.11-3.15's `model.fit` train under `MultiWorkerMirroredStrategy`.

    Call it once before `fit` (for instance right after creating the
    strategy). It is idempotent. On Keras versions outside 3.11-3.15 it
    patches nothing and warns once per process (a `UserWarning`). The patches
    change nothing unless the model's strategy is a
    `MultiWorkerMirroredStrategy` with more than one worker. It returns a
    context manager: used in a `with` statement, the patches are removed on
    exit (if this call installed them).

    Example:

    ```python
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with keras_homeostasis.distribute_compat.enable_multi_worker_fit():
        with strategy.scope():
            model = build_model()
        model.fit(dataset, callbacks=[SynapticScalingCallback()])
    ```
    """
    if not needs_patch():
        _warn_not_patched()
    installed = needs_patch() and not is_enabled()
    if installed:
        _install()
    return _Restorer(installed)


class _Restorer:
    """Removes the patches on `__exit__` if its call installed them."""

    def __init__(self, installed):
        self.installed = installed

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.installed and is_enabled():
            _uninstall()
        return False


def check_steps_per_execution(model):
    """Raises when Keras would crash on the model's `steps_per_execution`.

    Keras 3.11-3.15 cannot run `steps_per_execution > 1` when a `tf.distribute`
    strategy has more than one replica (`keras-team/keras#19246`): `fit`
    fails inside Keras with "You must feed a value for placeholder tensor".
    This raises a `ValueError` saying so and how to proceed. On other Keras
    versions it returns and lets Keras try.
    """
    steps = getattr(model, "steps_per_execution", 1)
    strategy = model.distribute_strategy
    if (
        not crashes_on_steps_per_execution()
        or steps <= 1
        or strategy.num_replicas_in_sync <= 1
    ):
        return
    raise ValueError(
        "Received an invalid value for `steps_per_execution` under "
        f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} "
        f"replicas: Keras {keras.__version__} cannot train with "
        "`steps_per_execution > 1` under a multi-replica tf.distribute strategy "
        f"(keras-team/keras#19246, {STEPS_PER_EXECUTION_ISSUE}). Compile the "
        "model with `steps_per_execution=1` (the default). Received: "
        f"steps_per_execution={steps}"
    )
