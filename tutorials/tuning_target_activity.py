"""
Title: Tune the firing-rate set point with keras-tuner
Author: keras_homeostasis contributors
Date created: 2026/11/29
Last modified: 2026/12/02
Description: Search the firing-rate set point and the rates of scaling with keras-tuner.
"""

# ruff: noqa: E402

"""
## Introduction

`SynapticScalingCallback` holds every hidden unit of a layer at one spread
of its synaptic drive (reached by scaling its incoming weights) and one
firing rate, the fraction of inputs on which its pre-activation is positive
(reached by moving its bias), and lets the layer drift slowly (`anchor`)
toward two set points: the spread `target_std` (1.0 by default) and the
firing rate `target_rate` (by default None: the layer's own rate). Without
set points (`None`) it is pure load balancing. Which firing rate suits a
model, how fast to correct, how often to act and how long to watch first
depend on the model and the data.
`keras_homeostasis.tuning.HomeostaticHyperModel` turns these settings into a
keras-tuner search space:

- it wraps your `build_model(hp)` (which may tune its own hyper-parameters);
- it registers the homeostatic hyper-parameters under the `scaling/` prefix:
  the set points (`target_mode`: an absolute `target_rate`, shared by the
  layers or one per layer, or the layers' own means), the scaling `rate` and
  the `bias_rate` (log-sampled), the momentum of the statistics traces, the
  period and the warm-up;
- it builds each trial's scaling callback from `hp` in `HyperModel.fit` (the
  callbacks given to `search()` are deep-copied by keras-tuner, never
  parameterised by `hp`);
- it marks diverged trials (NaN loss) as failed, so they are never chosen.

Set `KH_TUTORIAL_SMALL=1` to run it in under a minute (CI does).
"""

"""
## Setup
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import keras_tuner
from tutorial_setup import OUT
from tutorial_setup import SMALL
from tutorial_setup import build_mlp
from tutorial_setup import load_digits

from keras_homeostasis.metrics import UsageReport
from keras_homeostasis.tuning import HomeostaticHyperModel
from keras_homeostasis.tuning import homeostasis_objective
from keras_homeostasis.tuning import search_space

MAX_TRIALS = 2 if SMALL else 15
EPOCHS = 1 if SMALL else 8
WIDTH = 32 if SMALL else 128

"""
## Data: a validation split for the search

The search compares trials on validation data held out from the training
set; the test set is only used once, for the final model.
"""

(x_train, y_train), (x_test, y_test) = load_digits()
held_out = len(x_train) // 5
x_fit, y_fit = x_train[:-held_out], y_train[:-held_out]
x_val, y_val = x_train[-held_out:], y_train[-held_out:]

"""
## The model-building function

An ordinary keras-tuner `build_model(hp)`: plain Dense layers, compiled (the
tutorials' shared MLP, `tutorial_setup.build_mlp`: two `Dense(WIDTH,
activation="relu")` layers `hidden_1` and `hidden_2`, a softmax `output`).
Here it tunes its own learning rate too.
"""


def build_model(hp):
    learning_rate = hp.Choice("learning_rate", [1e-3, 3e-3])
    optimizer = keras.optimizers.Adam(learning_rate)
    return build_mlp(x_train.shape[1:], WIDTH, optimizer)


"""
## The search space

The default space covers every setting worth tuning with ranges around the
rule's defaults; the gain bounds (unbounded by default) and the spread set
point `target_std` keep the base settings. Each parameter can be replaced:
`None` (not searched), a value (fixed), a list (a choice) or a range
`{"min", "max", "sampling", "step"}`. Here the firing-rate set point
`target_rate` is searched between 0.2 and 0.8 (a unit firing on a fifth to
four fifths of its inputs), the warm-up is kept short for this small data
set, and a `target_rate` per layer is allowed.
"""

overrides = {
    "target_rate": {"min": 0.2, "max": 0.8},
    "warmup": [0, 10],
    "per_layer_targets": [False, True],
}
for line in search_space.describe(search_space.validate_search_space(overrides)):
    print(line)

"""
## The objective

Validation accuracy alone ignores how the units are used. With validation
data, the hypermodel logs two more metrics at each epoch end:

- `val_usage_entropy`: the mean normalised usage entropy of the scaled
  layers on the validation data (1.0: all units used equally);
- `val_homeostasis_score = val_accuracy + entropy_weight * val_usage_entropy`.

`homeostasis_objective()` maximises the score. With `entropy_weight=0.1`, an
entropy gain of 0.1 is worth one point of accuracy.
"""

hypermodel = HomeostaticHyperModel(
    build_model, search_space=overrides, entropy_weight=0.1, seed=0
)
tuner = keras_tuner.BayesianOptimization(
    hypermodel,
    objective=homeostasis_objective(),
    max_trials=MAX_TRIALS,
    num_initial_points=2 if SMALL else 5,
    seed=0,
    directory=OUT,
    project_name="tuning_tutorial",
    overwrite=True,
)

"""
## Searching

`search()` takes `model.fit` arguments. A `TensorBoard` callback gets one
folder per trial from keras-tuner (`logs/<trial>/execution0`); the
hypermodel writes the Homeostasis dashboard's data to its `homeostasis`
subfolder, so `tensorboard --logdir <OUT>/tuning_logs` shows every trial's
units, and the HParams tab compares the trials.

Rerunning with `overwrite=False` resumes an interrupted search.
"""

tuner.search(
    x_fit,
    y_fit,
    epochs=EPOCHS,
    batch_size=32,
    validation_data=(x_val, y_val),
    callbacks=[keras.callbacks.TensorBoard(os.path.join(OUT, "tuning_logs"))],
    verbose=0,
)
tuner.results_summary(num_trials=3)

"""
## Training the best configuration

`get_best_hyperparameters()` gives the winning values (`scaling/target_mode`
and the `scaling/target_rate`, or one `scaling/layer_targets/<layer>` per
layer); `scaling_callbacks` turns them into the callbacks for a final
training on all the training data, evaluated once on the test set.
"""

best_hp = tuner.get_best_hyperparameters(1)[0]
print({k: v for k, v in best_hp.values.items() if k.startswith("scaling/")})
keras.utils.set_random_seed(0)
model = build_model(best_hp)
model.fit(
    x_train,
    y_train,
    epochs=EPOCHS,
    batch_size=32,
    callbacks=hypermodel.scaling_callbacks(best_hp, model),
    verbose=0,
)
print("test accuracy:", model.evaluate(x_test, y_test, verbose=0)[1])
print(
    UsageReport.from_model(model, x_test, layers=["hidden_1", "hidden_2"]).to_markdown()
)

"""
## From the command line

The same search runs from a YAML config, with a progress line per trial, a
table of all trials (`trials.csv`, `trials.md`) and the best settings written
as a config that `train` accepts:

```
keras-homeostasis tune configs/tune_quickstart.yaml
keras-homeostasis train runs/tune_quickstart/best.yaml
```

See `docs/configs.md` for the `tune` section and its search space.
"""
