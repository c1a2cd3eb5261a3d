"""Gives every MirroredStrategy created in these tests its own collective keys.

All MirroredStrategy objects in one process number their collectives from
the same keys, and the runtime remembers each key's tensor shape: a second
strategy running a different model then fails with "Shape mismatch in the
collective instance 100". TensorFlow's own tests give each strategy its own
key range through `_collective_key_base` (documented there as "Only set this
in tests"); so do these, and restore it afterwards so no other test file
shares a range with them.
"""

import itertools

import pytest
import tensorflow as tf

_ranges = itertools.count(1)


@pytest.fixture(autouse=True)
def own_collective_keys():
    strategy = tf.distribute.MirroredStrategy
    saved = strategy._collective_key_base
    strategy._collective_key_base = 100000 * (100 + next(_ranges))
    yield
    strategy._collective_key_base = saved
