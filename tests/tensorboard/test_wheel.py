"""The built wheel ships the plugin's frontend and its entry point."""

import pathlib
import shutil
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
STATIC = ROOT / "keras_homeostasis" / "tensorboard" / "static"


def test_the_wheel_contains_the_frontend_and_the_entry_point(tmp_path):
    # Build from a copy so that the shared working tree gets no build/ or egg-info.
    source = tmp_path / "source"
    source.mkdir()
    for name in ["setup.py", "pyproject.toml", "README.md"]:
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "keras_homeostasis",
        source / "keras_homeostasis",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--quiet", "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("keras_homeostasis-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [
            n for n in names if n.endswith(".dist-info/entry_points.txt")
        ]
        declared = archive.read(entry_points).decode()
    frontend = sorted(p.name for p in STATIC.iterdir() if p.suffix in (".js", ".css"))
    assert {"index.js", "style.css"} <= set(frontend)
    for name in frontend:
        assert f"keras_homeostasis/tensorboard/static/{name}" in names
    assert "keras_homeostasis/tensorboard/homeostasis_plugin.py" in names
    assert "[tensorboard_plugins]" in declared
    assert (
        "homeostasis = keras_homeostasis.tensorboard.homeostasis_loader:"
        "HomeostasisLoader" in declared
    )
    # The command line lives in the lab subpackage, which the wheel ships.
    assert "keras_homeostasis/lab/cli.py" in names
    assert "keras-homeostasis = keras_homeostasis.lab.cli:main" in declared
