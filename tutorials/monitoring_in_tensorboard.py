"""
Title: Monitor homeostasis in TensorBoard
Author: keras_homeostasis contributors
Date created: 2026/11/29
Last modified: 2026/11/29
Description: Log units and scale factors to TensorBoard, also under MirroredStrategy.
"""

# ruff: noqa: E402

"""
## Introduction

keras_homeostasis installs a TensorBoard plugin: `tensorboard --logdir runs`
shows a **Homeostasis** tab with, for each layer, every unit's activity over
training (a heatmap), the sorted activity at any step, the spread of the
units' scale factors and the usage statistics (entropy, coefficient of
variation, dead fraction).

Two callbacks write its data:

- `SynapticScalingCallback(log_dir=..., log_freq=...)` logs the layers it
  scales;
- `HomeostasisLogger(log_dir, probe_data=...)` logs any model, e.g. a
  BatchNorm baseline, measuring its hidden layers on a fixed probe batch.

This tutorial trains three runs (plain + logger, scaled, scaled under a
two-replica `MirroredStrategy`), then reads the logged summaries back.
Set `KH_TUTORIAL_SMALL=1` to run it in under a minute (CI does).
"""

"""
## Setup

The distributed run needs two devices. On a machine with one CPU, TensorFlow
can split it into two logical devices, before any other TensorFlow work.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)

"""
Then the usual imports, the settings and the data.
"""

import keras
from tensorboard.backend.event_processing import event_accumulator
from tutorial_setup import OUT
from tutorial_setup import SMALL
from tutorial_setup import build_mlp
from tutorial_setup import load_digits

from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis.tensorboard import HomeostasisLogger

LOGS = os.path.join(OUT, "tensorboard")
EPOCHS = 1 if SMALL else 10
LOG_FREQ = 10  # optimizer steps between two summaries

(x_train, y_train), (x_test, y_test) = load_digits()
if SMALL:
    x_train, y_train = x_train[:320], y_train[:320]

"""
The model is the tutorials' shared MLP (`tutorial_setup.build_mlp`): two
hidden blocks of 64 units whose post-ReLU outputs are the layers `hidden_1`
and `hidden_2`; with `batchnorm=True` each block is a bias-free `Dense`
(`hidden_<k>_linear`), a `BatchNormalization` (`hidden_<k>_norm`) and a ReLU.
"""


def build_model(batchnorm=False):
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
    return build_mlp(x_train.shape[1:], 64, optimizer, batchnorm=batchnorm, seed=0)


"""
## A baseline, logged on a probe batch

A model without homeostatic state is measured by `HomeostasisLogger` on
`probe_data`, a small fixed batch (kept small: it runs at every log). Its
units get a factor of 1. The logger writes from `on_train_begin` to
`on_train_end` only, so it can be deep-copied (keras-tuner does that).
"""

baseline = build_model(batchnorm=True)
baseline.fit(
    x_train,
    y_train,
    epochs=EPOCHS,
    batch_size=32,
    callbacks=[
        HomeostasisLogger(
            os.path.join(LOGS, "batchnorm"),
            update_freq=LOG_FREQ,
            probe_data=x_test[:256],
            layers=["hidden_1", "hidden_2"],  # the post-ReLU outputs
        )
    ],
    verbose=0,
)

"""
## A scaled run

With `log_dir`, the scaling callback logs the layers it scales, from its own
statistics (no extra forward pass): each unit's activity trace, its
cumulative factor, the set point and the usage statistics, every `log_freq`
optimizer steps and at each epoch end. Keras' own `TensorBoard` callback can
write to the same folder.
"""

model = build_model()
model.fit(
    x_train,
    y_train,
    epochs=EPOCHS,
    batch_size=32,
    callbacks=[
        SynapticScalingCallback(
            log_dir=os.path.join(LOGS, "scaling"), log_freq=LOG_FREQ
        ),
        keras.callbacks.TensorBoard(os.path.join(LOGS, "scaling"), write_graph=False),
    ],
    verbose=0,
)

"""
## A distributed run: MirroredStrategy over two devices

Build and compile the model under the strategy's scope, as for any Keras
model; the callback needs no change. Each replica accumulates its units'
statistics; one all-reduce per step sums those of every scaled layer, so
every replica applies the same factors and the replicas stay identical. The
summaries are written once (by the chief, under multi-worker training).
"""

devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
strategy = tf.distribute.MirroredStrategy(devices)
print("replicas:", strategy.num_replicas_in_sync)
with strategy.scope():
    mirrored = build_model()
mirrored.fit(
    x_train,
    y_train,
    epochs=EPOCHS,
    batch_size=64,  # the global batch: 32 per replica
    callbacks=[
        SynapticScalingCallback(
            log_dir=os.path.join(LOGS, "mirrored"), log_freq=LOG_FREQ
        )
    ],
    verbose=0,
)
print("mirrored test accuracy:", mirrored.evaluate(x_test, y_test, verbose=0)[1])

"""
For several machines (or processes), `keras-homeostasis train CONFIG
--workers 2` trains under `MultiWorkerMirroredStrategy` on local workers;
with your own cluster, set `TF_CONFIG` on each worker and call
`keras_homeostasis.distribute_compat.enable_multi_worker_fit()` before
`fit`. Only the chief writes the summaries.

## What was logged

Each run folder holds event files with one `homeostasis` summary per layer
and logged step. TensorBoard reads them; so can a script:
"""

for run in ("batchnorm", "scaling", "mirrored"):
    folder = os.path.join(LOGS, run)
    events = event_accumulator.EventAccumulator(
        folder, size_guidance={event_accumulator.TENSORS: 0}
    )
    events.Reload()
    for tag in sorted(events.Tags()["tensors"]):
        if events.SummaryMetadata(tag).plugin_data.plugin_name != "homeostasis":
            continue
        steps = [e.step for e in events.Tensors(tag)]
        print(
            f"{run:10s} {tag:20s} {len(steps)} summaries, steps {steps[0]}..{steps[-1]}"
        )

"""
## Opening the dashboard

```
tensorboard --logdir runs/tutorials/tensorboard
```

then open the **Homeostasis** tab. Runs are overlaid by layer name, so the
BatchNorm baseline and the scaled runs can be compared side by side: the
scaled runs' sorted activity curves flatten toward the target while their
factor bands spread; the baseline's factors stay at 1.
"""
