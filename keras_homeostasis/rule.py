"""The homeostatic rule, as pure `keras.ops` functions.

Everything else in the package (layers, callback, metrics, tuner, plugin) is a
thin user of this module. Notation, for one layer with units `i = 1..n` (Dense
units, or convolution channels pooled over batch and space). A unit computes

    z_i = u_i + b_i,   u_i = w_i . x   (its synaptic drive),   y_i = act(z_i)

Sensor, from one optimizer step's forward pass, summed over all replicas:

    |y| mean, #(z > 0) / N (firing rate), mean of u, mean of u^2

Traces with momentum `mu`, bias-corrected as in Adam (so a batch of one
example is as good a sensor as a batch of thousands, given steps):

    t <- mu t + (1 - mu) observation,   estimate = t / (1 - mu^steps)

    m_i = E[u_i],  q_i = E[u_i^2],  sigma_i = sqrt(q_i - m_i^2),
    mean_i = m_i + b_i   (the unit's mean pre-activation)

Two mechanisms act after each optimizer update, as in neurons. Each moves a
unit toward its layer at the full rate (load balancing), and the layer as a
whole toward the set point at `anchor` times that rate: a slow drift of the
layer's overall scale and offset is all the rule contests with the
optimizer, which stays free to set them step by step (the loss wants them,
the units' balance it does not see).

1. Synaptic scaling. Unit i's incoming weights (kernel column or filter) are
   multiplied by `s_i`, moving the spread of its drive toward the layer's
   geometric mean spread `g = exp(mean_j log sigma_j)`, and `g` toward the
   set point `sigma*` (`target_std`; None leaves the layer's scale alone):

       e_i = (log g - log sigma_i) + anchor * (log sigma* - log g)
       log s_i = clip(rate * e_i, -max_step, max_step)

   With `anchor = 0` the factors of a layer multiply to one exactly (unless
   a step is clipped at `max_step`): the rule never moves the layer's
   overall scale.

   with the cumulative factor optionally kept in `[min_gain, max_gain]`
   (unbounded by default: the rescale also removes the norm that gradient
   noise adds to the weights every step, so a bound would be reached and
   then let the weights grow).

2. Intrinsic plasticity. Unit i's bias (its threshold) moves its mean
   pre-activation, measured in spreads (`o_i = mean_i / sigma'_i`, with
   `sigma'_i = s_i sigma_i`), toward the layer's mean offset `o = mean_j o_j`
   (equal firing rates, the sparsity the optimizer chose), and `o` toward
   `Phi^-1(target_rate)`, the offset at which a unit fires on a fraction
   `target_rate` of its inputs (default None: the layer's own):

       o*_i = o + anchor * (Phi^-1(target_rate) - o)
       b_i <- b_i + bias_rate * sigma'_i (o*_i - o_i)

   The offset reads a firing rate off the drive as if it were Gaussian. A
   drive peaked at the background (a filter on non-negative pixels) is
   silent on every input at offsets where a Gaussian one fires often, and
   the offsets would not show it. With `silence_evidence = k` (default
   None: off), a unit silent on all of a step's values where its offset
   expected it to fire on `k` or more of the step's examples is taken at
   the offset its silence allows, `Phi^-1(k / examples)`.

   With `max_offset = K` (default None: off), the step also keeps every
   unit's offset within `[-K, K]`: a unit the optimizer pushed below `-K`
   (firing on fewer than `Phi(-K)` of its inputs) or above `K` is moved
   back to the bound at once. At large learning rates one optimizer step
   of a bias can move a unit by many spreads, and a layer's units can all
   fall silent before the rates above reach them:

       b_i <- b_i + sigma'_i (clip(o_i + bias_rate (o*_i - o_i), -K, K) - o_i)

With `period = P > 1` the rule runs on every P-th optimizer step only, on
that step's statistics, with its traces decaying by `mu^P` per run (the
same span in optimizer steps) and its rates compounded over the period (the
same speed); the steps between are the optimizer's alone.

Together they hold every unit's pre-activation at its layer's mean and
spread, through the weights instead of through a layer: every unit equally
used, no unit silent, and nothing to compute at inference.
Both act on quantities they measure directly and the traces are compensated
at once (`m_i <- s_i m_i`, `q_i <- s_i^2 q_i`), so the loop cannot lag,
overshoot or run away whatever the optimizer adds each step.
"""

import math

from keras import ops

# Smallest spread treated as non-zero when taking logarithms.
EPSILON = 1e-12

# A layer whose drives' (geometric mean) spread is below this fraction of
# `target_std` has a silent input: no factor can give it a spread, so the
# anchor leaves its scale alone instead of growing its kernel without bound.
SILENT_INPUT = 1e-4

# The per-unit statistics packed by the sensor, in order (each of n values),
# followed by the examples and the values counted.
STATISTICS = ("abs_output", "firing", "drive", "drive_square")

# The traces the rule keeps, one per statistic.
TRACES = ("activity", "firing_rate", "drive_mean", "drive_square")


def sensor_statistics(preactivation, outputs, bias, unit_axis):
    """Per-unit sums of the sensed statistics, the examples and the count
    of values summed.

    `preactivation` is `z` (before the activation), `outputs` is `y`, `bias`
    the layer's bias or None, `unit_axis` the axis holding the units. Returns
    a packed float32 vector
    `[sum|y|, #(z>0), sum u, sum u^2 (n each), examples, count]` so that one
    all-reduce carries every statistic. The examples are the length of the
    batch axis (the first, or the second where the units are on the first):
    a convolution's positions, or a sequence's steps, are values of one
    example.
    """
    z = ops.cast(preactivation, "float32")
    y = ops.cast(outputs, "float32")
    unit_axis, axes, count = _slices(z, unit_axis)
    drive = unit_drive(z, bias, unit_axis)
    sums = [
        ops.sum(ops.abs(y), axis=axes),
        ops.sum(positive(z), axis=axes),
        ops.sum(drive, axis=axes),
        ops.sum(ops.square(drive), axis=axes),
    ]
    examples = ops.shape(z)[1 if unit_axis == 0 else 0]
    sums.append(ops.reshape(ops.cast(examples, "float32"), (1,)))
    return _packed(sums, count)


def _slices(x, axis):
    """`axis` of `x` made non-negative, the other axes (summed over), and
    the number of values each slice along `axis` holds (float32)."""
    rank = len(x.shape)
    axis = axis % rank
    others = tuple(a for a in range(rank) if a != axis)
    return axis, others, ops.cast(ops.size(x) // ops.shape(x)[axis], "float32")


def _packed(sums, count):
    """Per-unit sums and their count as one vector, for one all-reduce."""
    return ops.concatenate(list(sums) + [ops.reshape(count, (1,))], axis=0)


# Momentum of the input-mean trace of layers that center their inputs
# (`center_inputs=True`): about a hundred steps (docs/design.md, "Centered
# inputs").
INPUT_MOMENTUM = 0.99


def input_sums(inputs, feature_axis=-1):
    """`[sum of each input feature over the other axes (m), count]`, float32:
    what one forward pass adds to a centered layer's input-mean trace."""
    x = ops.cast(inputs, "float32")
    _, axes, count = _slices(x, feature_axis)
    return _packed([ops.sum(x, axis=axes)], count)


def step_input_mean(trace, steps, sums, momentum=INPUT_MOMENTUM):
    """A centered layer's input-mean trace and its update count after one
    pass's `input_sums` (unchanged when they are not finite or count none)."""
    usable = is_usable(sums)
    observed = sums[:-1] / ops.maximum(sums[-1], 1.0)
    new = update_trace(trace, observed, momentum)
    return ops.where(usable, new, trace), ops.where(usable, steps + 1.0, steps)


def input_mean(trace, steps, momentum=INPUT_MOMENTUM):
    """The bias-corrected input mean a centered layer subtracts (zeros
    before its first training pass)."""
    return ops.where(steps > 0, debiased(trace, momentum, steps), 0.0)


def positive(x):
    """1.0 where `x > 0`, else 0.0, in float arithmetic: a boolean comparison
    is not vectorized on CPU and cost 3-8x as much as this per element."""
    return ops.sign(ops.relu(x))


def output_statistics(outputs, unit_axis):
    """Per-unit `[sum|y| (n), #(y>0) (n), count]` of outputs (the usage metrics)."""
    y = ops.cast(outputs, "float32")
    _, axes, count = _slices(y, unit_axis)
    return _packed(
        [ops.sum(ops.abs(y), axis=axes), ops.sum(positive(y), axis=axes)], count
    )


def packed_size(units):
    """Length of a packed statistics vector for a layer of `units` units."""
    return len(STATISTICS) * units + 2


def split_statistics(packed):
    """Splits a packed vector into per-unit means (a dict, with the
    step's `examples`) and the count."""
    units = (packed.shape[0] - 2) // len(STATISTICS)
    count = packed[-1]
    safe = ops.maximum(count, 1.0)
    means = {
        name: packed[k * units : (k + 1) * units] / safe
        for k, name in enumerate(STATISTICS)
    }
    means["examples"] = packed[-2]
    return means, count


def is_usable(packed):
    """True when the statistics are finite and were counted on some data."""
    return ops.logical_and(ops.all(ops.isfinite(packed)), packed[-1] > 0)


def update_trace(trace, observation, momentum):
    """Exponential moving average started at zero (bias-corrected on use)."""
    return momentum * trace + (1.0 - momentum) * observation


def trace_momentum(settings):
    """The traces' momentum per update of the rule: `momentum ** period`.

    The rule runs once every `period` optimizer steps, so its traces span
    as many optimizer steps whatever the period.
    """
    return settings["momentum"] ** settings["period"]


def per_run(settings):
    """The settings of one run of the rule, every `period` optimizer steps.

    `rate`, `bias_rate` and `max_step` are per optimizer step: one run
    corrects what `period` steps at those rates would have corrected of a
    steady error, so the period changes what the rule costs, not how fast
    it acts.
    """
    period = settings["period"]
    if period == 1:
        return settings
    return {
        **settings,
        "rate": 1.0 - (1.0 - settings["rate"]) ** period,
        "bias_rate": 1.0 - (1.0 - settings["bias_rate"]) ** period,
        "max_step": period * settings["max_step"],
    }


def debiased(trace, momentum, steps):
    """The trace divided by `1 - momentum^steps` (Adam's bias correction)."""
    steps = ops.cast(ops.maximum(steps, 1), "float32")
    # momentum^steps as exp(steps log momentum): `power` is not vectorized
    # on CPU and cost as much as the rest of a layer's arithmetic.
    log_momentum = math.log(momentum) if momentum > 0 else -math.inf
    weight = 1.0 - ops.exp(steps * log_momentum)
    return trace / ops.maximum(weight, EPSILON)


def drive_spread(drive_mean, drive_square):
    """Standard deviation of each unit's drive from its first two moments."""
    return ops.sqrt(ops.maximum(drive_square - ops.square(drive_mean), EPSILON))


def synaptic_scaling(spread, log_gain, settings):
    """Mechanism 1: bounded log factors moving each spread to its set point.

    `spread` and `log_gain` are one layer's per-unit vectors (the set point
    is their layer's mean). Returns the log factors `log s_i` to apply to
    the units' kernels.
    """
    log_spread = ops.log(spread)
    log_target = ops.mean(log_spread)
    if settings["target_std"] is not None:
        log_set_point = math.log(settings["target_std"])
        pull = settings["anchor"] * (log_set_point - log_target)
        silent = log_target < log_set_point + math.log(SILENT_INPUT)
        log_target += ops.where(silent, 0.0, pull)
    error = log_target - log_spread
    step = ops.clip(
        settings["rate"] * error, -settings["max_step"], settings["max_step"]
    )
    low, high = settings["min_gain"], settings["max_gain"]
    if low is None and high is None:
        return step
    low = -math.inf if low is None else math.log(low)
    high = math.inf if high is None else math.log(high)
    return ops.clip(log_gain + step, low, high) - log_gain


def relaxed_directions(kernel, log_gain, relaxation):
    """Scale-invariant layers: each unit's direction vector (`kernel`, units
    on the last axis) moved toward the norm of its gain `exp(log_gain)`.

    The layer computes with `kernel / |kernel|` only, so this changes
    nothing it computes; it undoes the optimizer's lengthening of the
    vectors, which shrinks every later step by `(gain / |kernel|)^2`:
    `log |kernel|` moves toward `log_gain` by `relaxation` per call.
    """
    axes = tuple(range(len(kernel.shape) - 1))
    log_norm = 0.5 * ops.log(ops.sum(ops.square(kernel), axis=axes) + EPSILON)
    return kernel * ops.exp(relaxation * (log_gain - log_norm))


def unit_drive(z, bias, unit_axis):
    """Each unit's drive `u = z - b`: the float32 pre-activation `z` less
    its bias (None: no bias), the units on `unit_axis`."""
    if bias is None:
        return z
    shape = [1] * len(z.shape)
    shape[unit_axis] = -1
    return z - ops.reshape(ops.cast(bias, "float32"), shape)


def direction_gradient(kernel, gradient, length):
    """The gradient of a scale-invariant layer's direction vector `v`, of
    length `length` per unit, from that of the kernel it computes with,
    `w = g v / |v|` (units on the last axis; `g = |w|`):

        dL/dv = (g / l) (dL/dw - w (w . dL/dw) / g^2)

    (`hold_norms=True`: a plain layer's kernel gets it in the backward
    pass, so the optimizer steps as it would on `v`). `g` is summed from
    the kernel itself, not read from the state: a read of the state's
    gains in the forward pass, consumed only here, is not ordered before
    the rule's write of them in the same step.
    """
    axes = tuple(range(len(kernel.shape) - 1))
    square = ops.sum(ops.square(kernel), axis=axes) + EPSILON
    along = ops.sum(kernel * gradient, axis=axes) / square
    return (ops.sqrt(square) / length) * (gradient - along * kernel)


def scale_invariant_step(kernel, previous, length, norm):
    """A held kernel's optimizer step taken as a step of a scale-invariant
    layer's direction vector (`hold_norms=True`; units on the last axis).

    `previous` is the kernel before the step (`g v / |v|`, with `norm` its
    `g = |previous|` per unit) and `length` each unit's vector length
    `l = |v|`. The optimizer, handed `direction_gradient`, stepped as on
    `v`, so `v` becomes `l previous / g + (kernel - previous)`. Returns it
    and its length, the unit's new `l`: each step across `v` lengthens it,
    so later steps turn the unit less than a plain kernel's (by `(g / l)^2`
    under SGD, `g / l` under Adam).
    """
    axes = tuple(range(len(kernel.shape) - 1))
    vector = (length / (norm + EPSILON)) * previous + (kernel - previous)
    return vector, ops.sqrt(ops.sum(ops.square(vector), axis=axes))


def held_directions(vector, length, log_gain):
    """Each unit's direction vector `vector`, of length `length`, scaled to
    the norm of its gain `exp(log_gain)` (`hold_norms=True`: the kernel the
    layer computes with next, `g v / |v|`)."""
    return vector * (ops.exp(log_gain) / (length + EPSILON))


def relaxed_length(length, log_gain, relaxation):
    """A scale-invariant layer's vector lengths after `relaxed_directions`:
    `log l` moved toward `log_gain` by `relaxation` (`hold_norms=True` with
    `norm_relaxation`)."""
    return length * ops.exp(relaxation * (log_gain - ops.log(length + EPSILON)))


def rate_quantile(target_rate):
    """Phi^-1(target_rate): the mean, in spreads, of a unit firing that often."""
    return math.sqrt(2.0) * _erfinv(2.0 * target_rate - 1.0)


def silence_bound(examples, evidence):
    """Phi^-1(evidence / examples): the highest offset at which a unit
    silent on all `examples` is no surprise (+inf below `evidence` examples).

    A unit at offset `o` fires on a share `Phi(o)` of values; silent on all
    of them in `examples` independent examples has probability at most
    `(1 - Phi(o))^examples < exp(-evidence)` above the bound, however
    alike one example's positions are.
    """
    share = evidence / ops.maximum(examples, 1.0)
    # Clipped at 1 so that no NaN is computed where the bound is not used.
    bound = math.sqrt(2.0) * ops.erfinv(2.0 * ops.minimum(share, 1.0) - 1.0)
    return ops.where(share < 1.0, bound, math.inf)


def observed_offset(offset, firing, examples, evidence):
    """Each unit's offset in spreads, unless this step's silence refutes it.

    The offset reads a firing rate off the drive's mean and spread as if
    the drive were Gaussian. A skewed drive breaks that: a filter on
    non-negative pixels can peak at the background, and a bias below that
    peak silences it on every input while its offset says it fires often.
    A unit that fired on none of the step's values (`firing` 0) above
    `silence_bound` is given the bound instead.
    """
    bound = silence_bound(examples, evidence)
    refuted = ops.logical_and(firing <= 0.0, offset > bound)
    return ops.where(refuted, bound, offset)


def intrinsic_plasticity(drive_mean, spread, bias, settings, silence=None):
    """Mechanism 2: bias shifts moving each mean pre-activation to its set point.

    `drive_mean` and `spread` are one layer's, already rescaled by this
    step's factors. `silence`, with the setting
    `silence_evidence`, is the step's `(firing rate, examples)`, which can
    refute a unit's offset (`observed_offset`). With `max_offset`, the
    offsets it moves to are clipped to `[-max_offset, max_offset]`.
    """
    offset = (drive_mean + bias) / spread
    if settings["silence_evidence"] is not None and silence is not None:
        offset = observed_offset(offset, *silence, settings["silence_evidence"])
    goal = ops.mean(offset)
    if settings["target_rate"] is not None:
        goal += settings["anchor"] * (rate_quantile(settings["target_rate"]) - goal)
    bound = settings["max_offset"]
    if bound is None:
        return settings["bias_rate"] * spread * (goal - offset)
    moved = offset + settings["bias_rate"] * (goal - offset)
    return spread * (ops.clip(moved, -bound, bound) - offset)


def homeostatic_step(packed, state, bias, settings, checked=False):
    """One whole step of the rule, as a pure function of the state.

    Args:
        packed: globally summed statistics from `sensor_statistics`.
        state: dict of tensors: the traces named in `TRACES`, `log_gain` and
            `steps` (int64 count of the rule's usable updates so far: one
            per optimizer step, or per `period` steps).
        bias: the layer's bias after the optimizer update (zeros if none).
        settings: the validated settings dict (`settings.validate_settings`).
        checked: True when `packed` is one pass's sums as the sensor keeps
            them (`UnitState.step_statistics`: zeros where not finite),
            so only their count is tested. A sum of several passes can
            overflow, so it is tested whole (the default).

    Returns a dict with the new traces, `log_gain`, `steps`, and this step's
    kernel `factor` (s_i) and bias `shift`. A batch whose statistics are not
    finite leaves the state unchanged (factor 1, shift 0).
    """
    means, _ = split_statistics(packed)
    # The whole test is a reduction over every unit's statistics: on a CPU
    # with XLA, three kernels per layer and step (docs/overhead.md).
    usable = packed[-1] > 0 if checked else is_usable(packed)
    return step_on_means(means, usable, state, bias, settings)


def homeostatic_steps(packed, states, biases, settings, checked=None):
    """`homeostatic_step` for several layers sharing `settings`.

    `packed`, `states` and `biases` are lists, one entry per layer, and
    `checked` a tuple of each one's `homeostatic_step` flag (default: none
    checked); returns the list of new states. Each layer is stepped on its
    own vectors, as a homeostatic layer steps itself, so the callback and
    the layers stay bit-identical. Joining the layers' units instead (a
    concatenation per state field, a scatter and a gather per layer mean,
    a slice per result) gave fewer compiled kernels but a dearer online
    step: 1.40-1.66 times no homeostasis's CPU time against 1.18-1.20 now
    (`docs/distributed.md`).
    """
    checked = checked or (False,) * len(packed)
    results, last = [], None
    for p, state, bias, one_pass in zip(packed, states, biases, checked):
        if last is not None:
            p = after(p, last)
        new = homeostatic_step(p, state, bias, settings, one_pass)
        last = new["shift"]
        results.append(new)
    return results


def after(value, previous):
    """`value`, bit for bit, computed only once `previous` is.

    Adds `-0.0` computed from `previous` (`x + -0.0` is `x` for every `x`,
    `-0.0` and NaN included; a subnormal `x` becomes a zero, as TensorFlow
    and XLA flush it to one in every operation on a CPU, the rule's first
    included). The callback chains its layers' steps so:
    side by side, each layer's few small kernels of the rule left more
    kernels ready at once than XLA's CPU runtime runs on the launching
    thread, and from five layers on an online step handed kernels to
    worker threads, which cost more than the kernels (docs/overhead.md).
    """
    first = previous[:1]
    finite = ops.where(ops.isfinite(first), ops.abs(first), 0.0)
    # `-(0 * finite)`, not `-0.0 * finite`: a constant -0.0 can come back
    # from TensorFlow's cache of constants as 0.0, which equals it.
    return value + ops.cast(ops.negative(finite * 0.0), value.dtype)


def step_on_means(means, usable, state, bias, settings):
    """The rule on one layer's per-unit means (`split_statistics`, with the
    step's `examples`); `usable` is a scalar."""
    momentum = trace_momentum(settings)
    settings = per_run(settings)
    # Everything below reads the new count, not the old one: a step
    # counter that several compiled kernels read while the step writes it
    # in place is copied first by XLA, and on a CPU each such copy is one
    # more kernel ready at the step's start (docs/overhead.md, "XLA's
    # hand-over on a CPU"). Where the step is not usable, nothing read
    # from the count is kept.
    steps = ops.where(usable, state["steps"] + 1, state["steps"])
    traces = {
        name: update_trace(state[name], means[stat], momentum)
        for name, stat in zip(TRACES, STATISTICS)
    }
    drive_mean = debiased(traces["drive_mean"], momentum, steps)
    spread = drive_spread(drive_mean, debiased(traces["drive_square"], momentum, steps))
    # The warm-up counts observed steps: at `period > 1`, runs of the rule
    # (a batch of one example is no measure of a unit's spread).
    due = steps > settings["warmup"]
    apply_now = ops.logical_and(usable, due)
    # Chosen before `exp`, so that the factor reaches the kernel rescale as
    # one vector: selected after it, the compiled update re-evaluated the
    # choice for every weight (a third of the first kernel's update time).
    log_s = synaptic_scaling(spread, state["log_gain"], settings)
    factor = ops.exp(ops.where(apply_now, log_s, 0.0))
    shift = intrinsic_plasticity(
        drive_mean * factor,
        spread * factor,
        bias,
        settings,
        silence=(means["firing"], means["examples"]),
    )
    shift = ops.where(apply_now, shift, 0.0)
    # The drive traces follow the rescale at once (compensation, no lag).
    traces["drive_mean"] = traces["drive_mean"] * factor
    traces["drive_square"] = traces["drive_square"] * ops.square(factor)
    new = {name: ops.where(usable, traces[name], state[name]) for name in TRACES}
    new["log_gain"] = state["log_gain"] + ops.log(factor)
    new["steps"] = steps
    new["factor"] = factor
    new["shift"] = shift
    return new


def _erfinv(x):
    # Inverse error function on a Python float (settings are plain numbers),
    # by Newton's method on math.erf: exact to float precision in a few steps.
    y = 0.0
    for _ in range(60):
        err = math.erf(y) - x
        y -= err / (2.0 / math.sqrt(math.pi) * math.exp(-y * y))
    return y
