"""
Title: Loss of plasticity on Online Permuted MNIST
Author: keras_homeostasis contributors
Date created: 2026/12/01
Last modified: 2026/12/07
Description: Measure a network's loss of plasticity over a stream of tasks.
"""

# ruff: noqa: E402

"""
## Introduction

Dohare et al. ("Loss of plasticity in deep continual learning", Nature 2024)
showed that a network trained by plain backpropagation on a long sequence of
tasks gradually loses its ability to learn new ones: its accuracy on each new
task falls, more and more of its ReLU units die (output zero on every input),
and its representation collapses to fewer dimensions (its effective rank
falls). Their simplest benchmark is **Online Permuted MNIST**: every task is
MNIST with a new fixed random permutation of the pixels, and every example is
seen exactly once, with batch size 1.

This tutorial runs that benchmark with the pieces of
`keras_homeostasis.lab.continual` (the `keras-homeostasis continual` command)
and compares plain backprop with the rule alone,
`SynapticScalingCallback(center_inputs=False, hold_norms=False)`
(`scaling`), which keeps each hidden unit's activity near a set point and
so works against dead units, and with the callback's defaults,
`SynapticScalingCallback()` (`held_centered_scaling`: `center_inputs=True,
hold_norms=True`): it holds each unit's offset against the kernel's steps
and lets only the rule set each unit's kernel norm, so the plain layers
train as the centered, scale-invariant homeostatic layers.

Set `KH_TUTORIAL_SMALL=1` to run it in a few seconds on the 8x8 digits (CI
does); otherwise it uses MNIST from `../shared/datasets/mnist.npz` when that
file exists.
"""

"""
## Setup
"""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from tutorial_setup import OUT
from tutorial_setup import SMALL

from keras_homeostasis.lab import continual
from keras_homeostasis.lab import continual_report

MNIST = pathlib.Path("..", "shared", "datasets", "mnist.npz")
if not MNIST.exists():
    MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared/datasets/mnist.npz"
DATASET = str(MNIST) if MNIST.exists() and not SMALL else "digits"
os.makedirs(OUT, exist_ok=True)

"""
## The benchmark's settings

The benchmark has its own small config (the same sections as
`configs/continual_quick.yaml`). Here: an MLP with three hidden ReLU layers,
plain SGD with batch size 1, a few tasks. Dohare et al. used 784-2000-2000-
2000-10, step size 0.003 and 800 tasks of 60,000 examples
(`configs/continual_dohare.yaml`, for a GPU).
"""

raw = {
    "data": {
        "dataset": DATASET,
        "examples_per_task": 200 if SMALL else 5000,
        "probe_examples": 100 if SMALL else 2000,
    },
    "model": {"hidden": [16, 16, 16] if SMALL else [100, 100, 100]},
    "training": {"learning_rate": 0.03, "batch_size": 1, "steps_per_execution": 100},
    "continual": {
        "tasks": 3 if SMALL else 10,
        "methods": ["backprop", "scaling", "held_centered_scaling"],
    },
    "output": {
        "run_dir": os.path.join(OUT, "continual_small" if SMALL else "continual")
    },
}
config = continual.validate_config(raw)
pool = continual.load_pool(config)
print("data set:", DATASET, "pool:", pool[0].shape)

"""
## Tasks: one permutation each

A task is a seeded random subset of the training images, in a seeded random
order, with the task's pixel permutation applied. The permutation depends
only on the seed and the task number, so every method sees the same stream.
"""

x1, y1 = continual.task_data(pool, seed=0, task=1, examples=5)
x2, y2 = continual.task_data(pool, seed=0, task=2, examples=5)
print("task 1 permutation starts", continual.task_permutation(0, 1, 64)[:8])
print("task 2 permutation starts", continual.task_permutation(0, 2, 64)[:8])

"""
## Online accuracy is the accuracy of one pass of `fit`

Keras computes the training metrics of `fit` on the predictions of the
forward pass that precedes each update. With batch size 1 and one epoch over
a task's examples, the epoch's `accuracy` is therefore exactly the online
accuracy: the fraction of examples classified correctly just before the
network learned from them. `steps_per_execution` and `jit_compile=True` make
batch-1 training fast (the model is compiled so by `continual.build_model`).
"""

model = continual.build_model(config, "backprop", pool[0].shape[1], 10)
for task in (1, 2):
    x, y = continual.task_data(pool, 0, task, config["data"]["examples_per_task"])
    accuracy, loss = continual.online_task(model, config, x, y)
    print(f"task {task}: online accuracy {accuracy:.4f}")

"""
## What is measured at the end of each task

On the first `probe_examples` images of the task, at each hidden block's
post-ReLU output:

- **dead units**: the percentage of units whose output is zero on every one
  of those images;
- **effective rank**: `exp(-sum p_k log p_k)` with `p_k` the singular values
  of the (images x units) representation divided by their sum; it equals `n`
  for `n` equal singular values and 1 for a rank-1 representation;
- **mean |w|** of the block's kernel.
"""

print("effective rank of I_4:", continual.effective_rank(np.eye(4)))
print("effective rank of a rank-1 matrix:", continual.effective_rank(np.ones((6, 3))))
print(continual.probe(model, config, x[: config["data"]["probe_examples"]]))

"""
## Backprop against synaptic scaling

`run_continual` trains one network per method through all the tasks,
appends one row per task to `results.csv` as soon as the task ends (a rerun
resumes where it stopped) and writes `results.md` and three plots.
"""

rows = continual.run_continual(config, log=print)
print(continual_report.table(rows))

"""
## Reading the results

Compare the first and the last 10% of tasks: with plain backprop the online
accuracy falls as units die and the effective rank shrinks (clearly so over
tens of tasks with the full settings; `docs/continual.md` has a 20-task run of
every method). Over 20 tasks of the full settings the callback's defaults
(norms held, inputs centered) keep about 0.84 online accuracy with no unit
dead, where the rule alone is at 0.74-0.77 (README, "Online and continual
learning"); over
longer streams give it `scaling: {norm_relaxation: 1.0e-4}` (the
callback's `norm_relaxation=1e-4`), which keeps its later steps from
shrinking. The plots are in the run folder:
`online_accuracy.png`, `dead_units.png` and `effective_rank.png`. From the
command line:

```
keras-homeostasis continual configs/continual_quick.yaml
```
"""

print(
    "plots:",
    sorted(p for p in os.listdir(config["output"]["run_dir"]) if p.endswith(".png")),
)
