"""The lab's dependencies are an extra: the library works without them, and the
command line says in one line how to install them when they are missing.

A module is made missing the way Python documents: `sys.modules[name] = None`
makes `import name` raise `ImportError`, as if it were not installed.
"""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from keras_homeostasis.lab import config as config_lib
from keras_homeostasis.lab import dependencies

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAB_ONLY = sorted(dependencies.LAB_MODULES)


def run_without_lab(code, cwd):
    blocked = f"import sys\nfor name in {LAB_ONLY!r}:\n    sys.modules[name] = None\n"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", blocked + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def test_missing_names_the_distribution_of_a_module_that_cannot_be_imported(
    monkeypatch,
):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "yaml", None)
    assert dependencies.missing() == ["pyyaml", "scikit-learn"]
    message = dependencies.missing_message()
    assert message.startswith("the command line needs pyyaml, scikit-learn ")
    assert message.endswith('pip install "keras-homeostasis[lab]"')


def test_the_command_line_says_which_pip_install_fixes_it(tmp_path):
    result = run_without_lab(
        """
        from keras_homeostasis.lab import cli
        sys.exit(cli.main(["train", "configs/quickstart.yaml"]))
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "keras-homeostasis" in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("keras-homeostasis: error: the command line needs ")
    assert lines[0].endswith('install them with: pip install "keras-homeostasis[lab]"')
    assert not (tmp_path / "runs").exists()


def test_the_library_trains_logs_and_reports_without_the_lab(tmp_path):
    result = run_without_lab(
        """
        import numpy as np, keras, keras_homeostasis as kh
        from keras_homeostasis.tensorboard import HomeostasisLogger
        from keras_homeostasis.tensorboard import homeostasis_plugin  # noqa: F401
        x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
        y = (x[:, 0] > 0).astype("int32")
        model = keras.Sequential([keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(True))
        callbacks = [kh.SynapticScalingCallback(warmup=1),
                     HomeostasisLogger("logs", update_freq=1)]
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=callbacks)
        print(kh.metrics.UsageReport.from_model(model, x).to_markdown())
        print([m for m in sys.modules if m.split(".")[0] in {blocked!r}
               and sys.modules[m] is not None])
        """.replace("{blocked!r}", repr(set(LAB_ONLY))),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| layer | units |")
    assert lines[-1] == "[]"
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))


@pytest.mark.parametrize("given", ["configs/quickstart.yaml", "quickstart"])
def test_a_shipped_config_is_found_by_name_from_any_folder(
    given, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    found = pathlib.Path(config_lib.find_config(given))
    assert found.name == "quickstart.yaml"
    assert found.read_bytes() == (ROOT / "configs" / "quickstart.yaml").read_bytes()


def test_the_command_line_trains_a_shipped_config_by_name(tmp_path, monkeypatch):
    from keras_homeostasis.lab import cli

    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    argv = ["train", "quickstart", "--epochs", "1", "--quiet", "--run-dir"]
    assert cli.main(argv + [str(run_dir)]) == 0
    assert (run_dir / "model.keras").is_file()


def test_a_local_file_wins_over_the_shipped_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart.yaml").write_text("data: {}\n")
    assert config_lib.find_config("quickstart.yaml") == "quickstart.yaml"


def test_an_unknown_config_names_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="'nope.yaml'") as error:
        config_lib.find_config("nope.yaml")
    assert "quickstart.yaml" in str(error.value)
