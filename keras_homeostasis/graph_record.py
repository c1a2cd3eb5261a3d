"""One value per thread and per graph being traced, kept by weak reference.

`traced_passes` (a layer's passes, for its step in the same function) and
`step_order` (the last homeostatic step, for the next one to wait for)
each keep something for the function being traced. Both keep it per
thread, since each replica of a `tf.distribute` strategy traces on its
own, and per graph, weakly keyed: a graph is not kept alive by its record,
and a tensor is never used outside the graph it belongs to (a step inside
a conditional's branch sees only that branch's record).
"""

import threading
import weakref

import tensorflow as tf


class GraphRecord:
    """What this thread keeps for the graph it is tracing; nothing eagerly."""

    def __init__(self):
        self._local = threading.local()

    def get(self, default=None):
        """The value kept for the current graph, or `default` (always
        `default` outside a function)."""
        if not tf.inside_function():
            return default
        return self._by_graph().get(tf.compat.v1.get_default_graph(), default)

    def put(self, value):
        """Keeps `value` for the current graph (nothing outside a function).
        It must not hold the graph's tensors strongly: the graph would then
        keep itself alive through them."""
        if tf.inside_function():
            self._by_graph()[tf.compat.v1.get_default_graph()] = value

    def __len__(self):
        """How many of this thread's graphs still have a record."""
        return len(self._by_graph())

    def _by_graph(self):
        found = getattr(self._local, "by_graph", None)
        if found is None:
            found = self._local.by_graph = weakref.WeakKeyDictionary()
        return found
