"""One worker of a local MultiWorkerMirroredStrategy run (started by the tests).

    python tests/distribute/multi_worker_fit.py PORTS INDEX OUT [--layers]
        [--no-all-reduce] [--no-compat]

`PORTS` is a comma-separated list of 127.0.0.1 ports, one per worker; this
process is worker `INDEX`. Each worker trains on its own data (seeded by its
index, with a different input scale), with the scaling callback (or, with
`--layers`, the homeostatic layers), then writes every model variable, every
`UnitState` variable and every optimizer variable to the `.npz` file `OUT`.
`--no-all-reduce` replaces the engine's all-reduce by the identity: the
negative control, whose workers must drift apart. `--no-compat` trains
without `distribute_compat.enable_multi_worker_fit()`: Keras 3.15 alone fails.
"""

import argparse
import functools
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["CUDA_VISIBLE_DEVICES"] = ""
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))


def parse():
    parser = argparse.ArgumentParser()
    parser.add_argument("ports")
    parser.add_argument("index", type=int)
    parser.add_argument("out")
    parser.add_argument("--layers", action="store_true")
    parser.add_argument("--no-all-reduce", action="store_true")
    parser.add_argument("--no-compat", action="store_true")
    return parser.parse_args()


def worker_data(index, n=192):
    import numpy as np

    rng = np.random.default_rng(100 + index)
    # Different inputs and scales per worker: unsynchronised statistics diverge.
    x = rng.random((n, 8)).astype("float32") * (1.0 + index)
    y = rng.integers(0, 3, n).astype("int32")
    return x, y


def build(homeostatic):
    import keras

    import keras_homeostasis

    keras.utils.set_random_seed(0)
    if homeostatic:
        dense = functools.partial(keras_homeostasis.layers.HomeostaticDense, warmup=2)
    else:
        dense = keras.layers.Dense
    model = keras.Sequential(
        [
            keras.Input((8,)),
            dense(16, activation="relu", name="hidden0"),
            dense(12, activation="relu", name="hidden1"),
            keras.layers.Dense(3, name="output"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def snapshot(model):
    import keras

    arrays = {f"model/{v.path}": keras.ops.convert_to_numpy(v) for v in model.variables}
    for v in model.optimizer.variables:
        arrays[f"optimizer/{v.path}"] = keras.ops.convert_to_numpy(v)
    for layer in model.layers:
        state = getattr(layer, "homeostasis", None)
        if state is not None:
            for name, value in state.numpy_values().items():
                arrays[f"state/{layer.name}/{name}"] = value
    return arrays


def main():
    args = parse()
    ports = args.ports.split(",")
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": args.index},
        }
    )
    import numpy as np
    import tensorflow as tf

    from keras_homeostasis import distribute_compat
    from keras_homeostasis import engine
    from keras_homeostasis.synaptic_scaling_callback import SynapticScalingCallback

    if args.no_all_reduce:
        engine.all_reduce_sum = lambda value: value
    if not args.no_compat:
        distribute_compat.enable_multi_worker_fit()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    assert strategy.num_replicas_in_sync == len(ports)
    with strategy.scope():
        model = build(args.layers)
    callbacks = [] if args.layers else [SynapticScalingCallback(warmup=2)]
    x, y = worker_data(args.index)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32 * len(ports))
    options = tf.data.Options()
    # No sharding: each worker trains on its own data set.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF
    )
    history = model.fit(
        dataset.with_options(options), epochs=2, callbacks=callbacks, verbose=0
    )
    arrays = snapshot(model)
    arrays["history/loss"] = np.array(history.history["loss"])
    np.savez(args.out, **arrays)


if __name__ == "__main__":
    main()
