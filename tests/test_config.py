"""Tests of the experiment config schema and loader."""

import pathlib
import re

import numpy as np
import pytest
import yaml

from keras_homeostasis.lab import config as config_lib
from keras_homeostasis.lab.config import ConfigError
from keras_homeostasis.lab.config import load_config
from keras_homeostasis.lab.config import validate_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
# `continual_*.yaml` have their own schema (keras_homeostasis.lab.continual),
# checked in tests/test_continual.py.
CONFIGS = sorted(
    p for p in (ROOT / "configs").glob("*.yaml") if not p.name.startswith("continual")
)


def test_empty_config_gives_the_defaults():
    config = validate_config(None)
    assert config["data"]["dataset"] == "digits"
    assert config["model"]["hidden"] == [256, 256]
    assert config["compare"]["architectures"] == ["mlp"]
    assert config["compare"]["optimizers"] == [config["optimizer"]]
    assert set(config["scaling"]) == set(config_lib.SCALING_DEFAULTS) | {
        "layers",
        "layer_targets",
        "norm_relaxation",
    }


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    config = load_config(str(path))
    assert config["output"]["run_dir"].endswith(path.stem)


def test_shipped_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {
        "quickstart.yaml",
        "cnn.yaml",
        "compare_quick.yaml",
        "compare_mnist_mlp.yaml",
        "compare_mnist_cnn.yaml",
        "compare_batch_size_mlp.yaml",
        "compare_batch_size_cnn.yaml",
        "compare_lr_sweep.yaml",
    } <= names


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"trainig": {}}, "`trainig`"),
        ({"training": {"epoch": 3}}, "`training.epoch`"),
        ({"training": {"epochs": "ten"}}, "`training.epochs`"),
        ({"training": {"epochs": 0}}, "`training.epochs`"),
        ({"training": {"epochs": True}}, "`training.epochs`"),
        ({"training": {"jit_compile": "yes"}}, "`training.jit_compile`"),
        ({"training": 5}, "`training`"),
        ({"data": {"batch_size": 1.5}}, "`data.batch_size`"),
        ({"data": {"dataset": 3}}, "`data.dataset`"),
        ({"data": {"limit": -1}}, "`data.limit`"),
        ({"model": {"architecture": "resnet"}}, "`model.architecture`"),
        ({"model": {"normalization": "dropout"}}, "`model.normalization`"),
        ({"model": {"hidden": [64, "wide"]}}, "`model.hidden[1]`"),
        ({"model": {"hidden": []}}, "`model.hidden`"),
        ({"optimizer": {"name": "rmsprop"}}, "`optimizer.name`"),
        ({"optimizer": {"learning_rate": -0.1}}, "`optimizer.learning_rate`"),
        ({"optimizer": {"name": "adam", "momentum": 0.9}}, "`optimizer.momentum`"),
        ({"optimizer": {"nesterov": "no"}}, "`optimizer.nesterov`"),
        ({"scaling": {"rate": 5.0}}, "`scaling.rate`"),
        ({"scaling": {"period": 0}}, "`scaling.period`"),
        ({"scaling": {"bias_rate": 1.5}}, "`scaling.bias_rate`"),
        ({"scaling": {"target_rate": 1.0}}, "`scaling.target_rate`"),
        ({"scaling": {"target_std": 0}}, "`scaling.target_std`"),
        ({"scaling": {"min_gain": 2.0}}, "`scaling.min_gain`"),
        ({"scaling": {"max_gain": 0.5}}, "`scaling.max_gain`"),
        ({"scaling": {"rates": 0.1}}, "`scaling.rates`"),
        ({"scaling": {"layers": "hidden_1"}}, "`scaling.layers`"),
        ({"output": {"run_dir": 3}}, "`output.run_dir`"),
        ({"output": {"dir": "x"}}, "`output.dir`"),
        ({"compare": {"methods": ["none", "magic"]}}, "`compare.methods[1]`"),
        ({"compare": {"methods": ["none", "none"]}}, "`compare.methods`"),
        ({"compare": {"seeds": [0, -1]}}, "`compare.seeds[1]`"),
        ({"compare": {"optimizers": ["sgd", 3]}}, "`compare.optimizers[1]`"),
        (
            {"compare": {"optimizers": [{"name": "sgd", "learning_rate": "x"}]}},
            "`compare.optimizers[0].learning_rate`",
        ),
        (
            {"compare": {"optimizers": [{"name": "sgd", "lr": 0.1}]}},
            "`compare.optimizers[0].lr`",
        ),
        ({"compare": {"architectures": ["rnn"]}}, "`compare.architectures[0]`"),
        ({"compare": {"accuracy_threshold": 0}}, "`compare.accuracy_threshold`"),
        ({"compare": {"accuracy_threshold": 1.5}}, "`compare.accuracy_threshold`"),
        ({"compare": {"batch_sizes": [1, 0]}}, "`compare.batch_sizes[1]`"),
        ({"compare": {"batch_sizes": [2, 2]}}, "`compare.batch_sizes`"),
        ({"compare": {"batch_sizes": [1, 8]}}, "`compare.train_examples`"),
        ({"compare": {"train_examples": 0}}, "`compare.train_examples`"),
        ({"compare": {"lr_scaling": "cubic"}}, "`compare.lr_scaling`"),
        ({"compare": {"learning_rates": [0.1, -1]}}, "`compare.learning_rates[1]`"),
        ({"compare": {"learning_rates": []}}, "`compare.learning_rates`"),
        (
            {"optimizer": {"learning_rate": 0.1}, "compare": {"learning_rates": [1]}},
            "`optimizer.learning_rate`",
        ),
        (
            {
                "compare": {
                    "learning_rates": [0.1],
                    "optimizers": ["sgd", {"name": "adam", "learning_rate": 0.1}],
                }
            },
            "`compare.optimizers[1].learning_rate`",
        ),
        ({"compare": {"steps_per_execution": "fast"}}, "`compare.steps_per_execution`"),
        ({"compare": {"steps_per_execution": 0}}, "`compare.steps_per_execution`"),
        ({"compare": {"jit_compile": "yes"}}, "`compare.jit_compile`"),
    ],
)
def test_every_error_names_the_key(raw, key):
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    assert key in str(info.value)


def test_sweep_errors_echo_the_value():
    with pytest.raises(ConfigError, match=r"compare\.batch_sizes=\[1, 8\]"):
        validate_config({"compare": {"batch_sizes": [1, 8]}})
    with pytest.raises(ConfigError, match=r"compare\.lr_scaling='cubic'"):
        validate_config({"compare": {"lr_scaling": "cubic"}})
    with pytest.raises(ConfigError, match=r"optimizer\.learning_rate=0\.1"):
        validate_config(
            {"optimizer": {"learning_rate": 0.1}, "compare": {"learning_rates": [1]}}
        )


def test_sweep_keys_default_to_no_sweep():
    compare = validate_config(None)["compare"]
    assert compare["batch_sizes"] is None and compare["learning_rates"] is None
    assert compare["train_examples"] is None and compare["lr_scaling"] == "sqrt"
    assert compare["steps_per_execution"] is None and compare["jit_compile"] is None


def test_unbounded_gains_and_relative_set_points_are_null():
    config = validate_config(
        {"scaling": {"target_std": None, "target_rate": None, "max_gain": 4}}
    )
    scaling = config["scaling"]
    assert scaling["target_std"] is None and scaling["target_rate"] is None
    assert scaling["min_gain"] is None and scaling["max_gain"] == 4.0
    assert validate_config(None)["scaling"]["min_gain"] is None


def test_first_release_scaling_keys_are_ignored_with_a_warning():
    raw = {"scaling": {"target": 0.5, "revive": 0.01, "rate": 0.2}}
    with pytest.warns(UserWarning, match=r"scaling\.revive.*scaling\.target"):
        config = validate_config(raw)
    assert config["scaling"]["rate"] == 0.2
    assert "target" not in config["scaling"] and "revive" not in config["scaling"]
    assert raw["scaling"]["target"] == 0.5  # The caller's mapping is untouched.


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_use_the_current_settings(path, recwarn):
    load_config(str(path))
    assert not [w for w in recwarn if "first release" in str(w.message)]


def test_unknown_key_lists_allowed_keys():
    with pytest.raises(ConfigError) as info:
        validate_config({"training": {"epoch": 3}})
    message = str(info.value)
    for allowed in ("epochs", "seed", "steps_per_execution", "jit_compile"):
        assert allowed in message


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match="Allowed sections"):
        validate_config(["data"])


def test_numeric_strings_and_optimizer_entries():
    config = validate_config(
        {
            "optimizer": {"name": "adamw", "learning_rate": "1e-3"},
            "compare": {"optimizers": ["sgd", {"name": "adam", "beta_1": 0.8}]},
        }
    )
    assert config["optimizer"]["learning_rate"] == pytest.approx(1e-3)
    first, second = config["compare"]["optimizers"]
    assert first["name"] == "sgd" and first["learning_rate"] is None
    assert config_lib.optimizer_label(first) == "sgd"
    assert config_lib.optimizer_label(second) == "adam(beta_1=0.8)"


def test_load_config_applies_overrides_and_default_run_dir(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("training:\n  epochs: 7\n")
    config = load_config(str(path), overrides={"training": {"epochs": 2}})
    assert config["training"]["epochs"] == 2
    assert config["output"]["run_dir"] == "runs/exp"


def test_load_config_reports_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(str(path))
    with pytest.raises(FileNotFoundError):
        load_config(str(tmp_path / "missing.yaml"))


def test_relative_dataset_resolves_against_cwd_config_folder_then_parent(
    tmp_path, monkeypatch
):
    def place(folder):
        (tmp_path / folder / "data").mkdir(parents=True, exist_ok=True)
        np.savez(tmp_path / folder / "data" / "d.npz", x_train=np.zeros(1))
        return str(tmp_path / folder / "data" / "d.npz")

    path = tmp_path / "repo" / "configs" / "exp.yaml"
    (tmp_path / "repo" / "configs").mkdir(parents=True)
    path.write_text("data:\n  dataset: data/d.npz\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    in_parent = place("repo")
    assert load_config(str(path))["data"]["dataset"] == in_parent
    in_config_folder = place("repo/configs")
    assert load_config(str(path))["data"]["dataset"] == in_config_folder
    in_cwd = place("elsewhere")
    assert load_config(str(path))["data"]["dataset"] == in_cwd


def test_dump_config_round_trips_without_yaml_anchors(tmp_path):
    config = validate_config({"model": {"normalization": "scaling"}})
    path = tmp_path / "config.yaml"
    config_lib.dump_config(config, str(path))
    text = path.read_text()
    assert "&" not in text and "*" not in text
    assert validate_config(yaml.safe_load(text)) == config


def test_docs_describe_every_key():
    docs = (ROOT / "docs" / "configs.md").read_text()
    for section, keys in config_lib.SCHEMA.items():
        assert f"## `{section}`" in docs
        for key in keys:
            assert re.search(rf"\| `{key}` \|", docs), f"{section}.{key}"


@pytest.mark.mnist
@pytest.mark.parametrize(
    "name",
    [
        "compare_mnist_mlp.yaml",
        "compare_mnist_cnn.yaml",
        "compare_mnist_cnn_full.yaml",
        "compare_batch_size_mlp_adamw.yaml",
        "compare_batch_size_mlp.yaml",
        "compare_batch_size_cnn.yaml",
        "compare_lr_sweep.yaml",
        "compare_lr_sweep_cnn.yaml",
    ],
)
@pytest.mark.parametrize("cwd", [ROOT, ROOT / "configs"])
def test_mnist_configs_find_the_shared_copy(mnist_path, name, cwd, monkeypatch):
    monkeypatch.chdir(cwd)
    config = load_config(str(ROOT / "configs" / name))
    assert pathlib.Path(config["data"]["dataset"]) == mnist_path


def test_norm_relaxation_reaches_the_scale_invariant_layers_only():
    from keras_homeostasis.lab import train

    raw = {"data": {"dataset": "digits"}, "scaling": {"norm_relaxation": 1e-4}}
    config = validate_config(raw)
    assert config["scaling"]["norm_relaxation"] == 1e-4
    assert "norm_relaxation" not in config_lib.scaling_kwargs(config)
    data = ((np.zeros((4, 8, 8, 1), "float32"), np.arange(4)), (None, np.arange(4)))
    build = train.build_compiled_model
    optimizer = config["optimizer"]
    model = build(config, data, "mlp", "scale_invariant_layers", optimizer)
    assert model.get_layer("hidden_1").norm_relaxation == 1e-4
    plain = build(config, data, "mlp", "homeostatic_layers", optimizer)
    assert not plain.get_layer("hidden_1").scale_invariant
    with pytest.raises(ConfigError, match=r"scaling.norm_relaxation.*2"):
        validate_config({"scaling": {"norm_relaxation": 2}})
