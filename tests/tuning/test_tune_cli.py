"""`keras-homeostasis tune CONFIG` on a tiny config, end to end."""

import csv

import pytest
import yaml

from keras_homeostasis.lab import cli
from keras_homeostasis.lab import tune
from keras_homeostasis.lab.config import load_config


def _config(tmp_path, **tune):
    path = tmp_path / "tiny_tune.yaml"
    raw = {
        "data": {"dataset": "digits", "limit": 160, "batch_size": 32},
        "model": {"hidden": [16, 16], "normalization": "scaling"},
        "training": {"epochs": 1},
        "tune": {
            "tuner": "random",
            "max_trials": 2,
            "objective": "val_homeostasis_score",
            "search_space": {"target_mode": "absolute", "per_layer_targets": True},
            **tune,
        },
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def _rows(out):
    with open(out / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_tune_writes_trials_and_a_best_config_that_train_accepts(tmp_path, capsys):
    config, out = _config(tmp_path), tmp_path / "out"
    assert cli.main(["tune", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[1/2] trial" in printed and "[2/2] trial" in printed
    assert "Best trial" in printed
    for name in tune.RESULT_FILES:
        assert (out / name).exists(), name
    rows = _rows(out)
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]
    assert sum(r["best"] == "yes" for r in rows) == 1
    assert {"val_usage_entropy", "rate", "layer_targets/hidden_1"} <= set(rows[0])
    assert "| trial | status |" in (out / "trials.md").read_text()
    for row in rows:
        assert (out / "logs" / row["trial"] / "execution0" / "homeostasis").is_dir()

    # best.yaml is a config `train` accepts, with the best trial's settings.
    best = next(r for r in rows if r["best"])
    best_config = load_config(str(out / "best.yaml"))
    assert best_config["model"]["normalization"] == "scaling"
    assert best_config["scaling"]["rate"] == pytest.approx(float(best["rate"]))
    assert best_config["scaling"]["layer_targets"] == pytest.approx(
        {
            "hidden_1": float(best["layer_targets/hidden_1"]),
            "hidden_2": float(best["layer_targets/hidden_2"]),
        }
    )
    run = tmp_path / "best_run"
    assert cli.main(["train", str(out / "best.yaml"), "--run-dir", str(run)]) == 0
    assert (run / "model.keras").exists()

    # The same command again resumes: nothing left to run.
    assert cli.main(["tune", str(config), "--out", str(out), "--quiet"]) == 0
    assert len(_rows(out)) == 2

    # Another config in the same folder is refused.
    other = _config(tmp_path, entropy_weight=0.5)
    assert cli.main(["tune", str(other), "--out", str(out)]) == 2
    assert "another config" in capsys.readouterr().err


def test_tune_refuses_a_config_without_scaling(tmp_path, capsys):
    path = tmp_path / "bn.yaml"
    path.write_text(yaml.safe_dump({"model": {"normalization": "batchnorm"}}))
    assert cli.main(["tune", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "model.normalization" in capsys.readouterr().err


def test_tune_rejects_a_bad_tune_section(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"tune": {"search_space": {"rate": 0}}}))
    assert cli.main(["tune", str(path)]) == 2
    assert "tune.search_space.rate" in capsys.readouterr().err


def _layers_config(tmp_path, normalization="homeostatic_layers", **space):
    path = tmp_path / "layers_tune.yaml"
    raw = {
        "data": {"dataset": "digits", "limit": 160, "batch_size": 32},
        "model": {"hidden": [16, 16], "normalization": normalization},
        "training": {"epochs": 1},
        "tune": {
            "tuner": "random",
            "max_trials": 4,
            "objective": "val_homeostasis_score",
            "search_space": space,
        },
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def test_tune_searches_the_homeostatic_layers_and_their_kind(tmp_path):
    config = _layers_config(
        tmp_path,
        scale_invariant=[False, True],
        norm_relaxation={"min": 1e-4, "max": 1e-2, "sampling": "log"},
    )
    out = tmp_path / "out"
    assert cli.main(["tune", str(config), "--out", str(out), "--quiet"]) == 0
    rows = _rows(out)
    assert [r["status"] for r in rows] == ["COMPLETED"] * 4
    kinds = {r["scale_invariant"] for r in rows}
    assert kinds == {"True", "False"}  # the seeded search draws both
    for row in rows:
        # The relaxation is drawn only for scale-invariant layers.
        assert (row["norm_relaxation"] not in ("", None)) == (
            row["scale_invariant"] == "True"
        )
    # best.yaml names the layers the best trial used, and `train` accepts it.
    best = next(r for r in rows if r["best"])
    best_config = load_config(str(out / "best.yaml"))
    invariant = best["scale_invariant"] == "True"
    assert best_config["model"]["normalization"] == (
        "scale_invariant_layers" if invariant else "homeostatic_layers"
    )
    if invariant:
        assert best_config["scaling"]["norm_relaxation"] == pytest.approx(
            float(best["norm_relaxation"])
        )
    assert best_config["scaling"]["rate"] == pytest.approx(float(best["rate"]))
    run = tmp_path / "best_run"
    assert cli.main(["train", str(out / "best.yaml"), "--run-dir", str(run)]) == 0


@pytest.mark.parametrize(
    "normalization, centered",
    [
        ("scale_invariant_layers", "centered_scale_invariant_layers"),
        ("scaling", "centered_scaling"),
    ],
)
def test_tune_searches_center_inputs_and_names_the_method(
    tmp_path, normalization, centered
):
    # The layers' `center_inputs`, or the callback's.
    config = _layers_config(tmp_path, normalization, center_inputs=[False, True])
    out = tmp_path / "out"
    assert cli.main(["tune", str(config), "--out", str(out), "--quiet"]) == 0
    rows = _rows(out)
    assert [r["status"] for r in rows] == ["COMPLETED"] * 4
    assert {r["center_inputs"] for r in rows} == {"True", "False"}
    best = next(r for r in rows if r["best"])
    best_config = load_config(str(out / "best.yaml"))
    assert best_config["model"]["normalization"] == (
        centered if best["center_inputs"] == "True" else normalization
    )


def test_tune_searches_hold_norms_and_names_the_callback_method(tmp_path):
    config = _layers_config(
        tmp_path,
        "scaling",
        center_inputs=True,
        hold_norms=[False, True],
        norm_relaxation={"min": 1e-4, "max": 1e-2, "sampling": "log"},
    )
    out = tmp_path / "out"
    assert cli.main(["tune", str(config), "--out", str(out), "--quiet"]) == 0
    rows = _rows(out)
    assert [r["status"] for r in rows] == ["COMPLETED"] * 4
    assert {r["hold_norms"] for r in rows} == {"True", "False"}
    for row in rows:
        # The relaxation is drawn only for held norms.
        assert (row["norm_relaxation"] not in ("", None)) == (
            row["hold_norms"] == "True"
        )
    best = next(r for r in rows if r["best"])
    best_config = load_config(str(out / "best.yaml"))
    held = best["hold_norms"] == "True"
    assert best_config["model"]["normalization"] == (
        "held_centered_scaling" if held else "centered_scaling"
    )
    assert "hold_norms" not in best_config["scaling"]
    if held:
        assert best_config["scaling"]["norm_relaxation"] == pytest.approx(
            float(best["norm_relaxation"])
        )
    else:
        assert not best_config["scaling"].get("norm_relaxation")


def test_tune_refuses_layer_arguments_for_the_callback(tmp_path, capsys):
    config = _layers_config(tmp_path, "scaling", scale_invariant=[False, True])
    assert cli.main(["tune", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "scale_invariant" in err and "model.normalization" in err


def test_tune_refuses_per_layer_targets_for_the_layers(tmp_path, capsys):
    config = _layers_config(tmp_path, target_mode="absolute", per_layer_targets=True)
    assert cli.main(["tune", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "tune.search_space.per_layer_targets" in capsys.readouterr().err
