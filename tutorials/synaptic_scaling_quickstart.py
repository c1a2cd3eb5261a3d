"""
Title: Add synaptic scaling to an existing model.fit
Author: keras_homeostasis contributors
Date created: 2026/11/29
Last modified: 2026/12/07
Description: Add SynapticScalingCallback to a model.fit call and read the UsageReport.
"""

# ruff: noqa: E402

"""
## Introduction

Homeostatic synaptic scaling (Shen, Wang & Navlakha, 2021) keeps every hidden
unit of a network in use: after each optimizer step, each unit's incoming
weights are scaled so that the unit's activity moves toward a set point (by
default, its layer's), and its bias moves it toward its layer's firing rate.
Units that fire too much are scaled down, silent ones scaled up, and the
layer's work is shared more equally, without changing the model or the loss.

This tutorial takes an ordinary Keras MLP and its `model.fit` call, adds one
callback, and measures how equally the hidden units are used with a
`UsageReport`.

Set `KH_TUTORIAL_SMALL=1` to run it in a few seconds (CI does).
"""

"""
## Setup
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
from tutorial_setup import OUT
from tutorial_setup import SMALL
from tutorial_setup import build_mlp
from tutorial_setup import load_digits

from keras_homeostasis import SynapticScalingCallback
from keras_homeostasis.metrics import UsageReport

EPOCHS = 2 if SMALL else 15
WIDTH = 64 if SMALL else 256
os.makedirs(OUT, exist_ok=True)

"""
## The data

scikit-learn's 8x8 handwritten digits come with scikit-learn, so nothing is
downloaded: 1437 training and 360 test images, scaled to [0, 1].
"""

(x_train, y_train), (x_test, y_test) = load_digits()
print("train:", x_train.shape, "test:", x_test.shape)

"""
## An existing model and its training

Any model with `Dense` or `Conv` hidden layers will do. The callback scales
the hidden layers and leaves the output layer alone. Here, the tutorials'
shared MLP (`tutorial_setup.build_mlp`): `Flatten`, two `Dense(WIDTH,
activation="relu")` layers `hidden_1` and `hidden_2`, and a softmax `output`,
compiled for sparse categorical cross-entropy.
"""


def build_model():
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
    return build_mlp(x_train.shape[1:], WIDTH, optimizer, seed=0)


baseline = build_model()
baseline.fit(x_train, y_train, epochs=EPOCHS, batch_size=32, verbose=2 if SMALL else 1)
print("baseline test accuracy:", baseline.evaluate(x_test, y_test, verbose=0)[1])

"""
## Adding the callback

One line changes: `SynapticScalingCallback()` joins the callbacks. It keeps
its statistics in variables attached to each scaled layer
(`layer.homeostasis`), so `save`, `ModelCheckpoint` and `BackupAndRestore`
include them, and it does its work inside the compiled train step (no
per-batch Python), for any `steps_per_execution`, under XLA and under
`tf.distribute` strategies.

By default it gives plain layers what BatchNormalization holds for each
unit, through the unit's own weights, with nothing added to the model:

- `center_inputs=True`: each unit's offset is its bias, held against the
  optimizer's kernel steps at a trace of the layer's input mean, and set by
  the rule's intrinsic plasticity;
- `hold_norms=True`: only the rule sets each unit's kernel norm, and the
  optimizer turns the unit's weights, with steps that shrink as training
  goes on.

Together they balance every layer (usage entropy 0.997-1.000 on MNIST's MLP
and CNN), keep every unit alive, and train at batch size 1 with momentum
SGD at steps where the rule alone loses units (README, "Results"). The
held norms cost a copy of each scaled kernel. Its other settings (`rate`,
`momentum`, `target_std`, ...) are all optional. Put it before
`BackupAndRestore` or `ModelCheckpoint` in the list, like any callback
whose state must be saved with the model.
"""

model = build_model()
scaling = SynapticScalingCallback()
model.fit(
    x_train,
    y_train,
    epochs=EPOCHS,
    batch_size=32,
    callbacks=[scaling],
    verbose=2 if SMALL else 1,
)
print("scaled test accuracy:", model.evaluate(x_test, y_test, verbose=0)[1])

"""
The callback reports which layers it scaled. Each unit's kernel norm is the
gain the rule holds for it, `exp(log_gain)`:
"""

for layer, state in scaling.bindings:
    norms = keras.ops.sqrt(keras.ops.sum(keras.ops.square(layer.kernel), axis=0))
    gains = keras.ops.exp(state.log_gain)
    gap = float(keras.ops.max(keras.ops.abs(norms / gains - 1.0)))
    print(
        f"{layer.name}: {layer.units} units, kernel norms within {gap:.1e} of the gains"
    )

"""
## Reading the usage report

`UsageReport.from_model(model, data)` measures each hidden layer on a data
set in inference mode: the mean |activity| of each unit, and from these

- the **usage entropy** `H(p) / log(n)` of the usage shares `p_i = a_i /
  sum_j a_j` (1.0: every unit does an equal share);
- the **coefficient of variation** and the **Gini coefficient** of the
  activities (0: equal use);
- the **dead fraction**: units never positive on the data.
"""

before = UsageReport.from_model(baseline, x_test, layers=["hidden_1", "hidden_2"])
after = UsageReport.from_model(model, x_test, layers=["hidden_1", "hidden_2"])
print("Without scaling:\n" + before.to_markdown())
print("With scaling:\n" + after.to_markdown())

"""
The report saves as JSON, and plots the sorted activity curves (most used unit
first): a flatter curve means a more equal use of the units.
"""

after.save(os.path.join(OUT, "usage.json"))
after.plot(os.path.join(OUT, "usage.png"))
for name in after.layers:
    print(name, "usage entropy", round(after.layers[name]["usage_entropy"], 4))

"""
## The rule alone: cheaper

`center_inputs=False, hold_norms=False` leaves the rule alone: it multiplies
each unit's incoming weights by a factor that moves the unit's spread
toward its layer's and moves its bias toward its layer's firing rate. It
costs less per step (no kernel copy, no passes over the kernels), takes
`min_gain`/`max_gain` and every optimizer, and balances an MLP nearly as
well; on a CNN's Dense layer it stays below BatchNormalization's balance.
"""

plain_model = build_model()
plain = SynapticScalingCallback(center_inputs=False, hold_norms=False)
plain_model.fit(
    x_train,
    y_train,
    epochs=EPOCHS,
    batch_size=32,
    callbacks=[plain],
    verbose=2 if SMALL else 1,
)
print("rule alone test accuracy:", plain_model.evaluate(x_test, y_test, verbose=0)[1])
plain_report = UsageReport.from_model(
    plain_model, x_test, layers=["hidden_1", "hidden_2"]
)
print("Rule alone:\n" + plain_report.to_markdown())

"""
Its cumulative factor per unit is `exp(log_gain)` (unbounded by default):
"""

for layer, state in plain.bindings:
    factor = keras.ops.exp(state.log_gain)
    print(
        f"{layer.name}: factors in "
        f"[{float(keras.ops.min(factor)):.3f}, {float(keras.ops.max(factor)):.3f}]"
    )

"""
## Saving and loading

The classes are registered with Keras, so the model loads with no
`custom_objects`, homeostatic state included.
"""

path = os.path.join(OUT, "scaled.keras")
model.save(path)
restored = keras.saving.load_model(path)
print("restored test accuracy:", restored.evaluate(x_test, y_test, verbose=0)[1])

"""
## Next steps

- `keras-homeostasis train configs/quickstart.yaml` trains this kind of model
  from a YAML config and writes a run folder with the usage report.
- The tuning tutorial searches the callback's settings with keras-tuner.
- The TensorBoard tutorial shows the units' activity and factors while
  training, including under `MirroredStrategy`.
"""
