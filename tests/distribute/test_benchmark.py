"""`keras-homeostasis bench`: the measurement loop, the mirrored child process
and the report, on tiny cases (the timings themselves are not asserted)."""

import csv

import numpy as np
import pytest

from keras_homeostasis.lab import bench
from keras_homeostasis.lab import bench_cases
from keras_homeostasis.lab import bench_report
from keras_homeostasis.lab import cli
from keras_homeostasis.unit_state import UnitState

TINY = (8, 2, 16)


def homeostatic_floats(units, layers):
    state = UnitState(units)
    per_layer = sum(
        int(np.prod(v.shape)) for v in state.variables if v.dtype == "float32"
    )
    return per_layer * layers


def check_rows(rows):
    assert [r["variant"] for r in rows] == list(bench_cases.VARIANTS)
    by = {r["variant"]: r for r in rows}
    assert by["none"]["ratio"] == 1.0 and by["none"]["extra_ms"] == 0.0
    assert all(r["ms_per_step"] > 0 for r in rows)
    width, depth, _ = TINY
    expected = homeostatic_floats(width, depth)
    assert by["scaling"]["extra_state"] == expected
    assert by["homeostatic_layers"]["extra_state"] == expected
    assert by["batchnorm"]["extra_state"] == 2 * width * depth  # moving mean, var
    # Same model weights with and without homeostasis.
    assert by["scaling"]["weights"] == by["none"]["weights"]


@pytest.mark.slow
def test_measure_case_times_every_variant():
    check_rows(bench.measure_case(TINY, trials=2, steps=2))


@pytest.mark.slow
def test_measure_case_with_xla():
    check_rows(bench.measure_case(TINY, trials=1, steps=1, jit_compile=True))


@pytest.mark.slow
@pytest.mark.multi_device
def test_mirrored_child_process():
    replicas, rows = bench.measure_mirrored([TINY], trials=1, steps=1)
    assert replicas == 2
    check_rows(rows)


def fake_rows():
    rows = []
    for setting, ratio in ((bench_cases.ONE_DEVICE, 1.2), (bench_cases.MIRRORED, 1.05)):
        for width in (64, 256):
            for variant in bench_cases.VARIANTS:
                r = 1.0 if variant == "none" else ratio
                rows.append(
                    {
                        "setting": setting,
                        "width": width,
                        "depth": 3,
                        "batch": 128,
                        "variant": variant,
                        "ms_per_step": 2.0 * r,
                        "ratio": r,
                        "extra_ms": 2.0 * (r - 1),
                        "weights": 1000,
                        "extra_state": 0 if variant == "none" else 50,
                    }
                )
    return rows


def test_report_tables(tmp_path):
    rows = fake_rows()
    markdown = bench_report.to_markdown(rows, "cmd", "env")
    assert "| one device | 256 | 3 | 128 | 2.00 | 1.200 | 1.200 | 1.200 |" in markdown
    assert "<= 1.05 **missed**" in markdown
    assert "<= 1.10 met" in markdown
    # Only width varies here: one growth table, no batch or depth table.
    assert "Cost growth with width" in markdown
    assert "Cost growth with batch" not in markdown
    assert "| 256 | 3 | 1000 | 50 | 5.00% |" in markdown
    path = tmp_path / "bench.csv"
    bench_report.write_csv(rows, path)
    with open(path) as f:
        assert len(list(csv.DictReader(f))) == len(rows)


def test_bench_command_writes_csv_and_markdown(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(bench_cases.QUICK_CASES, bench_cases.ONE_DEVICE, [TINY])
    status = cli.main(
        ["bench", "--quick", "--settings", "one-device", "--trials", "1"]
        + ["--steps", "1", "--out", str(tmp_path)]
    )
    assert status == 0
    markdown = (tmp_path / "bench.md").read_text()
    assert "keras-homeostasis bench --quick" in markdown
    assert "| one device | 8 | 2 | 16 |" in markdown
    assert "Step time" in capsys.readouterr().out
