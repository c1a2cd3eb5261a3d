"""`keras-homeostasis bench`: its tables from given rows, and its command line
(argument errors, and one tiny real run writing the files)."""

import csv

import pytest

from keras_homeostasis.lab import bench_cases as bc
from keras_homeostasis.lab import bench_report
from keras_homeostasis.lab import cli


def fake_row(setting, case, variant, ratio):
    r = 1.0 if variant == "none" else ratio
    return {
        "setting": setting,
        **case._asdict(),
        "variant": variant,
        "steps": 10,
        "step_ms": 2.0 * r,
        "cpu_step_ms": 3.0 * r,
        "ratio_wall": r,
        "ratio_cpu": r + 0.01 * (variant != "none"),
        "first_epoch_s": 1.5,
        "first_epoch_cpu_s": 2.5,
        "refit_first_epoch_s": 0.25,
        "refit_ratio_wall": r,
        "refit_ratio_cpu": r,
        "weights": 1000,
        "extra_state": 0 if variant == "none" else 50,
    }


def fake_rows():
    """One device: homeostasis 1.2, BatchNorm 1.3 (missed); mirrored: 1.03
    below BatchNorm's 1.3 (met); width grows on one device only."""
    rows = []
    settings = ((bc.ONE_DEVICE, 1.2), (bc.MIRRORED, 1.03))
    for setting, ratio in settings:
        for width in (256, 64):
            case = bc.Case("mlp", width, 3, 128)
            if setting == bc.MIRRORED and width == 64:
                continue
            for variant in bc.VARIANTS:
                r = 1.3 if variant == "batchnorm" else ratio
                rows.append(fake_row(setting, case, variant, r))
    for variant in bc.ONLINE_VARIANTS:
        rows.append(fake_row(bc.ONLINE, bc.ONLINE_CASE, variant, 1.08))
    return rows


def test_ratio_table_and_verdicts():
    markdown = bench_report.Report(fake_rows(), [], "cmd", ["env."]).markdown()
    one = "| one device | MLP 784-256x3-10, batch 128 | 2.00 | 1.300 / 1.310 |"
    assert one + " 1.200 / 1.210 | 1.200 / 1.210 | 1.200 / 1.210 |" in markdown
    assert "<= 1.05, < BatchNorm: **missed**" in markdown
    assert "<= 1.05, < BatchNorm: met" in markdown
    # Online has no BatchNorm column value and no BatchNorm condition.
    assert "| online | MLP 784-100x3-10, batch 1 | 2.00 | n/a |" in markdown
    assert "<= 1.10: met" in markdown


def test_the_verdict_covers_every_mode_of_the_callback_and_layers():
    # `--variants centered_scaling held_centered_scaling`: judged on them.
    case = bc.ONLINE_CASE
    rows = [fake_row(bc.ONLINE, case, "none", 1.0)]
    rows += [fake_row(bc.ONLINE, case, "centered_scaling", 1.05)]
    rows += [fake_row(bc.ONLINE, case, "held_centered_scaling", 4.0)]
    assert "<= 1.10: **missed**" in bench_report.headlines(rows)[0]
    # The norm-holding references are measured beside, never judged.
    held = [rows[0], fake_row(bc.ONLINE, case, "unitnorm", 1.45)]
    held += [fake_row(bc.ONLINE, case, "weightnorm", 1.50)]
    assert "no callback or layers timed" in bench_report.headlines(held)[0]
    alone = [rows[0], fake_row(bc.ONLINE, case, "layernorm", 1.02)]
    assert "no callback or layers timed" in bench_report.headlines(alone)[0]


def test_growth_tables_only_where_a_setting_has_two_points():
    markdown = bench_report.Report(fake_rows(), [], "cmd", ["env."]).markdown()
    assert "Cost growth with width" in markdown
    assert "| one device | 64 | 2.00 |" in markdown
    assert "Cost growth with batch" not in markdown
    assert "Cost growth with depth" not in markdown


def test_headlines_name_each_settings_first_case():
    lines = bench_report.headlines(fake_rows())
    assert len(lines) == 3
    assert lines[0].startswith("bench headline, one device, MLP 784-256x3-10")
    assert "callback, rule alone 1.200 / 1.210" in lines[0]
    assert "online, MLP 784-100x3-10, batch 1" in lines[2]


def test_state_and_memory_tables(tmp_path):
    memory = [
        {**bc.HEADLINE._asdict(), "variant": v, "peak_rss_mb": 900.0}
        | {"fit_rss_growth_mb": g, "growth_vs_none_mb": g - 40, "device_peak_mb": ""}
        | {"peak_scope": "fit"}
        for v, g in (("none", 40.0), ("scaling", 52.5))
    ]
    markdown = bench_report.Report(fake_rows(), memory, "cmd", ["env."]).markdown()
    assert "| MLP 784-256x3-10, batch 128 | 1000 | +50 | +50 |" in markdown
    assert "| callback, rule alone | 900.0 | 52.5 | +12.5 | n/a |" in markdown
    path = tmp_path / "bench_memory.csv"
    bench_report.write_memory_csv(memory, path)
    with open(path, newline="") as f:
        assert [r["variant"] for r in csv.DictReader(f)] == ["none", "scaling"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rounds", "1"], "argument --rounds: expected at least 2"),
        (["--epochs", "1"], "argument --epochs: expected at least 2"),
        (["--gpus"], "argument --gpus: no GPU visible"),
    ],
)
def test_bench_argument_errors(args, message, capsys):
    assert cli.main(["bench", *args]) == cli.BAD_INPUT
    assert message in capsys.readouterr().err


def test_bench_out_must_be_a_folder(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("x")
    assert cli.main(["bench", "--out", str(path)]) == cli.BAD_INPUT
    assert "argument --out: not a folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "0"], "argument --steps: expected a positive integer"),
        (["--period", "0"], "argument --period: expected a positive integer"),
        (
            ["--silence-evidence", "0"],
            "argument --silence-evidence: expected a positive integer",
        ),
        (["--online-depth", "0"], "argument --online-depth: expected a positive"),
        (["--settings", "gpu"], "argument --settings: invalid choice: 'gpu'"),
        (["--variants", "bn"], "argument --variants: invalid choice: 'bn'"),
    ],
)
def test_bench_parser_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_bench_command_writes_csv_and_markdown(tmp_path, monkeypatch, capsys):
    tiny = bc.Case("mlp", 8, 2, 16)
    monkeypatch.setattr(bc, "cases", lambda quick, depth=None: {bc.ONE_DEVICE: [tiny]})
    monkeypatch.setattr(bc, "VARIANTS", ("none", "scaling"))
    status = cli.main(
        ["bench", "--quick", "--settings", "one-device", "--rounds", "2"]
        + ["--epochs", "2", "--steps", "2", "--period", "2", "--out", str(tmp_path)]
        + ["--silence-evidence", "10"]
    )
    assert status == 0
    markdown = (tmp_path / "bench.md").read_text()
    assert "keras-homeostasis bench --quick" in markdown
    assert "the rule every 2 step(s), silence_evidence 10;" in markdown
    assert "| one device | MLP 784-8x2-10, batch 16 |" in markdown
    with open(tmp_path / "bench.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == ["none", "scaling"]
    assert not (tmp_path / "bench_memory.csv").exists()
    out = capsys.readouterr().out
    assert "one device: 1 case(s)" in out
    assert "bench headline, one device, MLP 784-8x2-10, batch 16" in out


def test_bench_command_times_the_variants_asked_for(tmp_path, monkeypatch):
    tiny = bc.Case("mlp", 8, 2, 16)
    monkeypatch.setattr(bc, "cases", lambda quick, depth=None: {bc.ONE_DEVICE: [tiny]})
    status = cli.main(
        ["bench", "--quick", "--settings", "one-device", "--rounds", "2"]
        + ["--epochs", "2", "--steps", "2", "--out", str(tmp_path)]
        + ["--variants", "centered_scale_invariant_layers", "scaling"]
    )
    assert status == 0
    with open(tmp_path / "bench.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # `none`, the reference, always runs; the order is the bench's own.
    variants = ["none", "scaling", "centered_scale_invariant_layers"]
    assert [r["variant"] for r in rows] == variants
    markdown = (tmp_path / "bench.md").read_text()
    header = "| none ms/step | callback, rule alone wall / CPU | "
    assert header + "centered scale-invariant layers wall / CPU | target |" in markdown


def test_online_depth_sets_the_online_mlps_hidden_layers(tmp_path, monkeypatch):
    assert bc.cases(True)[bc.ONLINE] == [bc.ONLINE_CASE]
    for quick in (True, False):
        assert bc.cases(quick, 5)[bc.ONLINE] == [bc.Case("mlp", 100, 5, 1)]
        assert bc.cases(quick, 5)[bc.ONE_DEVICE] == bc.cases(quick)[bc.ONE_DEVICE]
    asked = []
    tiny = bc.Case("mlp", 8, 2, 1)

    def cases(quick, depth=None):
        asked.append(depth)
        return {bc.ONLINE: [tiny._replace(depth=depth)]}

    monkeypatch.setattr(bc, "cases", cases)
    monkeypatch.setattr(bc, "ONLINE_STEPS_PER_EXECUTION", 2)
    status = cli.main(
        ["bench", "--quick", "--settings", "online", "--rounds", "2", "--epochs"]
        + ["2", "--variants", "scaling", "--online-depth", "4", "--out", str(tmp_path)]
    )
    assert status == 0 and asked == [4]
    assert "| online | MLP 784-8x4-10, batch 1 |" in (tmp_path / "bench.md").read_text()


def test_chosen_variants_keep_the_bench_order_and_its_reference():
    assert bc.chosen_variants() == bc.VARIANTS
    chosen = bc.chosen_variants(["centered_layers", "batchnorm"])
    assert chosen == ("none", "batchnorm", "centered_layers")
    assert bc.online_variants(chosen) == ("none", "centered_layers")
    with pytest.raises(ValueError, match=r"Unknown bench variants \['bn'\]"):
        bc.chosen_variants(["bn", "none"])


@pytest.mark.parametrize("quick", [True, False])
def test_each_setting_opens_with_its_headline_case(quick):
    cases = bc.cases(quick)
    assert list(cases) == list(bc.SETTINGS)
    for setting, found in cases.items():
        expected = bc.ONLINE_CASE if setting == bc.ONLINE else bc.HEADLINE
        assert found[0] == expected
        assert len(set(found)) == len(found)
    if not quick:
        for axis in bc.GROWTH.values():
            assert set(axis) <= set(cases[bc.ONE_DEVICE])


def test_cnn_runs_a_quarter_of_the_steps():
    assert bc.case_steps(bc.HEADLINE, 40) == 40
    assert bc.case_steps(bc.CNN, 40) == 10
    assert bc.case_steps(bc.CNN, 3) == 2
