"""`keras-homeostasis bench`: real but tiny `fit` runs of every variant, the
ratio arithmetic, the report and the command line (timings not asserted)."""

import keras
import numpy as np
import pytest

from keras_homeostasis.lab import bench
from keras_homeostasis.lab import bench_cases as bc
from keras_homeostasis.lab import bench_timing
from keras_homeostasis.unit_state import UnitState

TINY = bc.Case("mlp", 8, 2, 16)
TINY_PLAN = {"rounds": 2, "epochs": 2, "steps": 2, "online_steps": 4}


def homeostatic_floats(units, layers):
    state = UnitState(units)
    per_layer = sum(
        int(np.prod(v.shape)) for v in state.variables if v.dtype == "float32"
    )
    return per_layer * layers


def check_rows(rows, variants=bc.VARIANTS):
    assert [r["variant"] for r in rows] == list(variants)
    by = {r["variant"]: r for r in rows}
    none = by["none"]
    for key in ("ratio_wall", "ratio_cpu", "refit_ratio_wall", "refit_ratio_cpu"):
        assert none[key] == 1.0
        assert all(r[key] > 0 for r in rows)
    for key in ("step_ms", "cpu_step_ms", "first_epoch_s", "refit_first_epoch_s"):
        assert all(r[key] > 0 for r in rows)
    width, depth = TINY.width, TINY.depth
    assert by["scaling"]["extra_state"] == homeostatic_floats(width, depth)
    for layers in ("homeostatic_layers", "scale_invariant_layers"):
        assert by[layers]["extra_state"] == homeostatic_floats(width, depth)
    assert by["scaling"]["weights"] == none["weights"]
    if "batchnorm" in by:
        assert by["batchnorm"]["extra_state"] == 2 * width * depth  # mean, var


def test_centered_layers_count_their_input_mean_as_state():
    variants = ("none", "centered_layers", "centered_scale_invariant_layers")
    rows = bench_timing.measure_case(TINY, variants, rounds=2, epochs=2, steps=2)
    # One trace per input feature and its step count, in each hidden layer:
    # 784 pixels into the first, 8 units into the second.
    input_means = (784 + 1) + (TINY.width + 1)
    for row in rows[1:]:
        assert row["extra_state"] == homeostatic_floats(8, 2) + input_means
        assert row["weights"] == rows[0]["weights"]


def test_the_centered_callback_counts_its_input_mean_and_drives_as_state():
    variants = ("none", "centered_scaling")
    rows = bench_timing.measure_case(TINY, variants, rounds=2, epochs=2, steps=2)
    # Each layer's input-mean trace and count, and one mean drive per unit.
    centering = (784 + 1) + (TINY.width + 1) + 2 * TINY.width
    assert rows[1]["extra_state"] == homeostatic_floats(8, 2) + centering
    assert rows[1]["weights"] == rows[0]["weights"]
    _, callbacks = bench_timing.build("centered_scaling", TINY)
    assert [c.center_inputs for c in callbacks] == [True]


def test_rounds_fit_every_variant_and_clock_each_epoch():
    runs = bench_timing.run_rounds(TINY, bc.VARIANTS, rounds=2, epochs=3, steps=2)
    for run in runs.values():
        assert [len(f["epochs"]) for f in run.fits] == [3, 3]
        for fit in run.fits:
            assert all(wall > 0 and cpu > 0 for wall, cpu in fit["epochs"])
            assert fit["wall"] >= sum(wall for wall, _ in fit["epochs"])
    check_rows(bench_timing.rows_of(TINY, runs, steps=2))


def test_norm_holding_references_fit_beside_none():
    variants = ("none", "weightnorm", "unitnorm")
    runs = bench_timing.run_rounds(TINY, variants, rounds=2, epochs=2, steps=2)
    assert not runs["unitnorm"].callbacks and not runs["weightnorm"].callbacks
    hidden = runs["unitnorm"].model.get_layer("hidden_1").kernel
    assert isinstance(hidden.constraint, keras.constraints.UnitNorm)
    rows = bench_timing.rows_of(TINY, runs, steps=2)
    assert [r["variant"] for r in rows] == list(variants)
    assert all(r["ratio_cpu"] > 0 for r in rows)
    assert not set(variants) & set(bc.HOMEOSTATIC)


def fake_fit(first, steady, epochs=3, fit_extra=0.5):
    walls = [first] + [steady] * (epochs - 1)
    return {
        "wall": sum(walls) + fit_extra,
        "cpu": 2 * (sum(walls) + fit_extra),
        "epochs": [(w, 2 * w) for w in walls],
    }


class FakeRun:
    def __init__(self, fits):
        self.fits = fits


def test_summarize_takes_ratios_within_rounds():
    # The machine slows down in round 2: ratios within a round stay 1.1.
    none = FakeRun([fake_fit(3.0, 1.0), fake_fit(1.0, 2.0), fake_fit(1.0, 1.0)])
    run = FakeRun([fake_fit(4.0, 1.1), fake_fit(1.5, 2.2), fake_fit(2.0, 1.1)])
    row = bench_timing.summarize(run, none, steps=10)
    assert row["ratio_wall"] == pytest.approx(1.1)
    assert row["ratio_cpu"] == pytest.approx(1.1)
    assert row["step_ms"] == pytest.approx(110.0)
    assert row["cpu_step_ms"] == pytest.approx(220.0)
    assert row["first_epoch_s"] == 4.0 and row["first_epoch_cpu_s"] == 8.0
    assert row["refit_first_epoch_s"] == pytest.approx(1.75)  # median of 1.5, 2.0
    # Later fits only: (1.5 + 4.4 + 0.5) / (1 + 4 + 0.5), (2 + 2.2 + .5) / 3.5.
    assert row["refit_ratio_wall"] == pytest.approx((6.4 / 5.5 + 4.7 / 3.5) / 2, 1e-3)


@pytest.mark.parametrize(
    "variants, rounds, epochs",
    [(("scaling", "none"), 2, 2), (bc.VARIANTS, 1, 2), (bc.VARIANTS, 2, 1)],
)
def test_measure_case_needs_none_first_two_rounds_two_epochs(variants, rounds, epochs):
    with pytest.raises(ValueError, match="rounds >= 2"):
        bench_timing.measure_case(TINY, variants, rounds, epochs, 2)


@pytest.mark.parametrize("variant", bc.HOMEOSTATIC)
@pytest.mark.parametrize("name, value", [("period", 3), ("silence_evidence", 10)])
def test_rule_settings_reach_both_homeostatic_variants(variant, name, value):
    model, callbacks = bench_timing.build(variant, TINY, **{name: value})
    if callbacks:
        assert [c.settings[name] for c in callbacks] == [value]
    else:
        found = [
            layer.homeostasis_settings[name]
            for layer in model.layers
            if hasattr(layer, "homeostasis_settings")
        ]
        assert found and set(found) == {value}


@pytest.mark.slow
def test_online_setting_runs_steps_per_execution(monkeypatch):
    monkeypatch.setattr(bc, "ONLINE_STEPS_PER_EXECUTION", 2)
    case = bc.Case("mlp", 8, 2, 1)
    rows = bench.measure(bc.ONLINE, [case], TINY_PLAN, log=lambda s: None)
    assert {r["setting"] for r in rows} == {bc.ONLINE}
    assert all(r["steps"] == 4 for r in rows)
    check_rows(rows, bc.ONLINE_VARIANTS)


@pytest.mark.slow
@pytest.mark.multi_device
def test_mirrored_child_process():
    replicas, rows = bench.measure_mirrored([TINY], TINY_PLAN)
    assert replicas == 2
    assert {r["setting"] for r in rows} == {bc.MIRRORED}
    check_rows(rows)


@pytest.mark.slow
def test_memory_children_report_peak_rss():
    from keras_homeostasis.lab import bench_memory

    settings = {"period": 2, "silence_evidence": 10}
    rows = bench_memory.measure_memory(
        TINY, ("none", "scaling"), steps=2, rule_settings=settings
    )
    assert [r["variant"] for r in rows] == ["none", "scaling"]
    assert all(r["peak_scope"] == "fit" for r in rows)  # Linux
    # The peak during the fit: at least the size before it, plus its growth.
    assert all(r["peak_rss_mb"] > 100 for r in rows)  # TensorFlow alone is more
    assert all(r["peak_rss_mb"] >= r["fit_rss_growth_mb"] > 0 for r in rows)
    assert rows[0]["growth_vs_none_mb"] == 0.0
    assert rows[1]["device_peak_mb"] == ""  # no GPU in the tests
