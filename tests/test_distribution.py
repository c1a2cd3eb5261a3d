"""The sdist and the wheel carry what a user needs, and the wheel installs.

`python -m build` makes the sdist, then the wheel from the unpacked sdist (as
pip does for a source install), so a file the sdist forgets fails here. The
wheel is installed with `--no-deps` into a new virtual environment that also
sees the site-packages of the environment running the tests (a `.pth` file,
after its own): the dependencies (TensorFlow alone is ~600 MB) come from there
instead of a download per run, while the package itself is imported from the
venv's own copy, which the checks below assert. Builds happen in a copy of the
sources, so the working tree gets no build/ or egg-info.
"""

import email
import pathlib
import re
import shutil
import site
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
STATIC = ROOT / "keras_homeostasis" / "tensorboard" / "static"
SOURCES = ["setup.py", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"]
SOURCES += ["MANIFEST.in", "configs", "keras_homeostasis"]
CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
FRONTEND = sorted(p.name for p in STATIC.iterdir() if p.suffix in (".js", ".css"))


def version():
    namespace = {}
    exec((ROOT / "keras_homeostasis" / "version.py").read_text(), namespace)
    return namespace["__version__"]


def copy_sources(target):
    target.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, target / name, ignore=ignore)
        else:
            shutil.copy(ROOT / name, target / name)


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """`(sdist, wheel)` paths, the wheel built from the sdist."""
    tmp = tmp_path_factory.mktemp("dist")
    copy_sources(tmp / "source")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp)]
        + [str(tmp / "source")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    # Older setuptools name the sdist keras-homeostasis-*, newer keras_homeostasis-*.
    (sdist,) = tmp.glob("keras[-_]homeostasis-*.tar.gz")
    (wheel,) = tmp.glob("keras_homeostasis-*.whl")
    return sdist, wheel


def wheel_files(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = {
            n.rsplit("/", 1)[-1]: archive.read(n).decode()
            for n in names
            if ".dist-info/" in n and not n.endswith("/")
        }
    return names, info


def test_both_are_named_by_the_single_sourced_version(dist):
    sdist, wheel = dist
    expected = rf"keras[-_]homeostasis-{re.escape(version())}\.tar\.gz"
    assert re.fullmatch(expected, sdist.name)
    assert wheel.name.startswith(f"keras_homeostasis-{version()}-py3-none-any")


def test_the_sdist_carries_the_sources_a_build_needs(dist):
    with tarfile.open(dist[0]) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    for name in ["setup.py", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"]:
        assert name in names
    for config in CONFIGS:
        assert f"configs/{config}" in names
    for name in FRONTEND:
        assert f"keras_homeostasis/tensorboard/static/{name}" in names


def test_the_wheel_carries_the_frontend_the_configs_and_the_lab(dist):
    names, info = wheel_files(dist[1])
    for name in FRONTEND:
        assert f"keras_homeostasis/tensorboard/static/{name}" in names
    assert {"index.js", "style.css"} <= set(FRONTEND)
    for config in CONFIGS:
        assert f"keras_homeostasis/configs/{config}" in names
    assert "keras_homeostasis/lab/cli.py" in names
    assert "keras_homeostasis/tensorboard/homeostasis_plugin.py" in names
    assert not any(n.startswith(("tests/", "docs/", "benchmarks/")) for n in names)
    points = info["entry_points.txt"]
    assert "keras-homeostasis = keras_homeostasis.lab.cli:main" in points
    assert "[tensorboard_plugins]" in points
    assert (
        "homeostasis = keras_homeostasis.tensorboard.homeostasis_loader:"
        "HomeostasisLoader" in points
    )


def test_the_metadata_states_the_licence_the_ranges_and_the_extras(dist):
    _, info = wheel_files(dist[1])
    metadata = email.message_from_string(info["METADATA"])
    licence = metadata.get("License-Expression") or metadata.get("License")
    assert licence == "Apache-2.0"
    assert "Apache License" in info["LICENSE"]
    requires = metadata.get_all("Requires-Dist")
    library = sorted(r for r in requires if "extra ==" not in r)
    assert [re.split(r"[<>=!]", r)[0] for r in library] == [
        "keras",
        "numpy",
        "tensorboard",
        "tensorflow",
    ]
    for requirement in library:
        assert "<2." not in requirement and "<3." not in requirement  # no minor cap
    assert {"lab", "tuning", "dev"} <= set(metadata.get_all("Provides-Extra"))
    assert any(r.startswith("pyyaml") and 'extra == "lab"' in r for r in requires)
    assert metadata.get_all("Project-URL")
    assert "Programming Language :: Python :: 3.11" in metadata.get_all("Classifier")


def test_the_oldest_pair_ci_tests_is_the_lower_bound_of_the_ranges():
    pins = dict(
        line.split("==")
        for line in (ROOT / ".ci" / "oldest-constraints.txt").read_text().split("\n")
        if "==" in line
    )
    setup = (ROOT / "setup.py").read_text()
    for name in ("tensorflow", "keras"):
        lower = re.search(rf'"{name}>=([\d.]+),', setup)[1]
        assert pins[name].startswith(lower + "."), (name, lower, pins[name])


def test_the_wheel_installs_and_runs_from_a_fresh_environment(dist, tmp_path):
    env_dir = tmp_path / "venv"
    # No pip inside: this environment's pip installs into it (`--python`).
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    # The dependencies: this environment's site-packages, after the venv's own.
    (purelib,) = (env_dir / "lib").glob("python3*/site-packages")
    (purelib / "dependencies.pth").write_text("\n".join(site.getsitepackages()))
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install"]
        + ["--no-deps", "--quiet", str(dist[1])],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr
    check = textwrap.dedent(
        """
        import importlib.metadata, pathlib
        import keras_homeostasis
        from keras_homeostasis.lab import config
        package = pathlib.Path(keras_homeostasis.__file__).parent
        print(package)
        print(keras_homeostasis.__version__)
        print(importlib.metadata.version("keras-homeostasis"))
        print(pathlib.Path(config.find_config("quickstart")).parent)
        print(sorted(p.name for p in (package / "tensorboard" / "static").iterdir()))
        """
    )
    ran = subprocess.run(
        [str(python), "-c", check],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # outside the repository: nothing imported from it
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    package, ours, packaged, configs, static = ran.stdout.strip().splitlines()[-5:]
    assert pathlib.Path(package).is_relative_to(env_dir)
    assert ours == packaged == version()
    assert configs == str(pathlib.Path(package) / "configs")
    assert set(FRONTEND) <= set(eval(static))
    cli = subprocess.run(
        [str(env_dir / "bin" / "keras-homeostasis"), "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert cli.stdout.strip() == version(), cli.stderr
