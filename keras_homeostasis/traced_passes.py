"""The training passes a homeostatic layer sensed in the function being traced.

A homeostatic layer adds every training pass's sums to its accumulator,
which the rule's step reads and clears. Where the step is traced into the
same function as the passes (a Keras `fit`, a custom loop's train
`tf.function`), it sums the passes' own tensors instead and only clears
the accumulator: the accumulator's earlier value is then never read, so
XLA drops the adds and does not copy the variable before its clear. Those
copies are kernels that start ready and took the layers' online step past
the number XLA's CPU runtime keeps on the launching thread
(docs/overhead.md, "XLA's hand-over on a CPU"). A step traced elsewhere
(another `tf.function`, or eagerly) reads the accumulator, which still
took every pass, as before.

Passes are kept per thread and per graph by weak reference
(`GraphRecord`): a graph whose passes no step took (a forward-only
function) is not kept alive by its record.
"""

import weakref

import tensorflow as tf

from keras_homeostasis.graph_record import GraphRecord

_passes = GraphRecord()


def record(state, packed):
    """Keeps `packed`, one pass's sums added to `state`'s accumulator, for
    a step traced into the same graph (nothing when running eagerly)."""
    if not tf.inside_function():
        return
    passes = _passes.get()
    if passes is None:
        passes = {}
        _passes.put(passes)
    # A strong reference would keep the graph (the dictionary's weak key)
    # alive through its own tensor.
    passes.setdefault(id(state), []).append(weakref.ref(packed))


def take(state):
    """The passes recorded for `state` in the graph being traced, in order,
    removed from the record; an empty list where there are none (or where
    one is gone: the accumulator holds them all)."""
    passes = _passes.get({})
    sums = [ref() for ref in passes.pop(id(state), [])]
    return [] if any(packed is None for packed in sums) else sums


class Recording:
    """Stands for a layer's `UnitState` in the sensor: adds each pass to the
    accumulator, as the state does, and records its sums (`record`)."""

    def __init__(self, state):
        self.state = state

    def accumulate(self, preactivation, outputs, bias=None, unit_axis=-1):
        packed = self.state.accumulate(preactivation, outputs, bias, unit_axis)
        if packed is not None:
            record(self.state, packed)
