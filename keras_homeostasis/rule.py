"""The homeostatic synaptic-scaling rule, as pure `keras.ops` functions.

Everything else in the package (layers, callback, metrics, tuner, plugin) is a
thin user of this module. Notation, for one layer with units `i = 1..n` (Dense
units, or convolution channels pooled over batch and space):

Sensor, from one optimizer step's forward pass, summed over all replicas:

    m_i = sum |y_i| / N            (mean activity)
    r_i = #{y_i > 0} / N           (firing rate)

Traces with momentum `mu` (the first finite batch initialises them):

    a_i <- mu * a_i + (1 - mu) * m_i
    f_i <- mu * f_i + (1 - mu) * r_i

Set point: a fixed `target` (rho_i = target) or, when `target` is None, the
layer's mean activity (rho_i = mean_j a_j: pure load balancing).

Scaling factor of unit i, for live units (f_i > silent_rate), else 1:

    log s_i = clip(eta * (log rho_i - log a_i), -max_step, max_step)

With a relative target the factors are renormalised so that the layer's total
activity is unchanged (sum_i s_i a_i = sum_i a_i); this removes the upward gain
drift that factors with geometric mean 1 would cause (Jensen's inequality).
The cumulative gain G_i = sum log s_i is kept inside [log min_gain, log max_gain].

Unit i's incoming weights (kernel column or filter, and bias) are multiplied
by s_i after the optimizer update. Because ReLU-like activations are positively
homogeneous, this multiplies the unit's output by exactly s_i, so the trace is
compensated at once (a_i <- s_i * a_i): the controller never acts on stale
activity, which is what made the naive rule overshoot and oscillate.

Silent units (f_i <= silent_rate) are never scaled (no runaway of dead
kernels); instead their bias rises by `revive * mean_j a_j` each step, the
intrinsic-excitability rule that brings a dead ReLU unit back to life.
"""

from keras import ops

# Smallest activity treated as non-zero when taking logarithms.
EPSILON = 1e-12


def unit_axis_reduction(outputs, unit_axis):
    """Per-unit sums of `|y|`, of `y > 0`, and the count of values summed.

    `outputs` may have any rank; `unit_axis` is the axis holding the units
    (the last axis for Dense and channels_last convolutions). Returns a packed
    float32 vector `[sum|y| (n), #(y>0) (n), count (1)]` so that one all-reduce
    carries every statistic.
    """
    y = ops.cast(outputs, "float32")
    rank = len(y.shape)
    unit_axis = unit_axis % rank
    axes = tuple(a for a in range(rank) if a != unit_axis)
    abs_sum = ops.sum(ops.abs(y), axis=axes)
    pos_sum = ops.sum(ops.cast(y > 0, "float32"), axis=axes)
    count = ops.cast(ops.size(y) // ops.shape(y)[unit_axis], "float32")
    return ops.concatenate([abs_sum, pos_sum, ops.reshape(count, (1,))], axis=0)


def split_statistics(packed):
    """Splits a packed vector into `(mean_activity, firing_rate, count)`."""
    units = (packed.shape[0] - 1) // 2
    count = packed[2 * units]
    safe = ops.maximum(count, 1.0)
    return packed[:units] / safe, packed[units : 2 * units] / safe, count


def is_usable(packed):
    """True when the statistics are finite and were counted on some data."""
    count = packed[-1]
    return ops.logical_and(ops.all(ops.isfinite(packed)), count > 0)


def update_trace(trace, observation, momentum, initialized):
    """Exponential moving average; the first observation initialises it."""
    blended = momentum * trace + (1.0 - momentum) * observation
    return ops.where(initialized, blended, observation)


def set_point(activity, target):
    """Per-unit set point: the fixed `target`, or the layer mean when None."""
    if target is None:
        return ops.ones_like(activity) * ops.mean(activity)
    return ops.ones_like(activity) * target


def log_factors(activity, firing_rate, rho, rate, max_step, silent_rate):
    """Bounded log scaling factors; silent units get exactly 0 (factor 1)."""
    error = ops.log(ops.maximum(rho, EPSILON)) - ops.log(ops.maximum(activity, EPSILON))
    step = ops.clip(rate * error, -max_step, max_step)
    return ops.where(is_live(activity, firing_rate, silent_rate), step, 0.0)


def is_live(activity, firing_rate, silent_rate):
    """Units that fire often enough to be scaled multiplicatively."""
    return ops.logical_and(firing_rate > silent_rate, activity > EPSILON)


def preserve_total(log_s, activity, live):
    """Shifts live units' log factors so that sum_i s_i a_i = sum_i a_i."""
    total = ops.sum(activity)
    scaled = ops.sum(ops.exp(log_s) * activity)
    correction = ops.log(ops.maximum(total, EPSILON)) - ops.log(
        ops.maximum(scaled, EPSILON)
    )
    correction = ops.where(total > EPSILON, correction, 0.0)
    return ops.where(live, log_s + correction, log_s)


def bound_cumulative(log_gain, log_s, min_gain, max_gain):
    """Clips the cumulative gain; returns `(new_log_gain, applied_log_s)`."""
    new_gain = ops.clip(log_gain + log_s, ops.log(min_gain), ops.log(max_gain))
    return new_gain, new_gain - log_gain


def revive_shift(activity, firing_rate, silent_rate, revive):
    """Bias increment for silent units: `revive` times the layer's mean activity."""
    silent = firing_rate <= silent_rate
    scale = ops.mean(activity)
    return ops.where(silent, revive * scale, ops.zeros_like(activity))


def homeostatic_step(packed, activity, firing_rate, log_gain, steps, settings):
    """One whole step of the rule, as a pure function of the state.

    Args:
        packed: globally summed statistics from `unit_axis_reduction`.
        activity, firing_rate, log_gain: the unit traces and cumulative gains.
        steps: int64 count of steps taken so far.
        settings: the validated settings dict (`settings.validate_settings`).

    Returns a dict with the new `activity`, `firing_rate`, `log_gain`,
    `steps`, and this step's `factor` (s_i) and bias `shift`. A batch whose
    statistics are not finite leaves the state unchanged (factor 1, shift 0).
    """
    usable = is_usable(packed)
    mean_activity, rate, _ = split_statistics(packed)
    initialized = steps > 0
    momentum = settings["momentum"]
    new_activity = update_trace(activity, mean_activity, momentum, initialized)
    new_firing = update_trace(firing_rate, rate, momentum, initialized)
    new_steps = steps + 1
    due = ops.logical_and(
        new_steps > settings["warmup"], ops.mod(new_steps, settings["period"]) == 0
    )
    log_s, shift = _factors(new_activity, new_firing, log_gain, settings)
    apply_now = ops.logical_and(usable, due)
    log_s = ops.where(apply_now, log_s, 0.0)
    shift = ops.where(apply_now, shift, 0.0)
    factor = ops.exp(log_s)
    return {
        # The trace follows the rescale at once (compensation, no lag).
        "activity": ops.where(usable, new_activity * factor, activity),
        "firing_rate": ops.where(usable, new_firing, firing_rate),
        "log_gain": log_gain + log_s,
        "steps": ops.where(usable, new_steps, steps),
        "factor": factor,
        "shift": shift,
    }


def _factors(activity, firing_rate, log_gain, settings):
    silent_rate = settings["silent_rate"]
    rho = set_point(activity, settings["target"])
    log_s = log_factors(
        activity, firing_rate, rho, settings["rate"], settings["max_step"], silent_rate
    )
    if settings["target"] is None:
        live = is_live(activity, firing_rate, silent_rate)
        log_s = preserve_total(log_s, activity, live)
    _, log_s = bound_cumulative(
        log_gain, log_s, settings["min_gain"], settings["max_gain"]
    )
    shift = revive_shift(activity, firing_rate, silent_rate, settings["revive"])
    return log_s, shift
