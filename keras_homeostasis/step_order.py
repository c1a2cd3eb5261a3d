"""The order of the homeostatic steps traced into one function.

Each layer's step of the rule is a few dozen small kernels that need only
that layer's statistics and bias. Traced side by side (one step per
homeostatic layer, or one per settings group of a callback), they become
ready together as the backward pass reaches their layers, and on a CPU
with XLA more than 8 ready kernels make the runtime hand kernels to worker
threads, which costs an online step more than the kernels (docs/overhead.md,
"XLA's hand-over on a CPU"). So each step traced into a function starts
only once the one traced before it there is done (`rule.after`): the
values are bit for bit the same.

The last step is kept per thread and per graph by weak reference
(`GraphRecord`): a step inside a conditional's branch chains only with
steps in that branch.
"""

import weakref

from keras_homeostasis import rule
from keras_homeostasis.graph_record import GraphRecord

_last = GraphRecord()


def after_last(packed):
    """`packed` (one layer's statistics, the first a step reads) computed
    after the last step traced into the current graph, if any."""
    ref = _last.get()
    last = None if ref is None else ref()
    return packed if last is None else rule.after(packed, last)


def note(result):
    """Records `result` (a tensor of the step just traced: its last
    layer's shift) as the one the next step in this graph waits for."""
    _last.put(weakref.ref(result))
