"""Packaging for keras_homeostasis.

The library (callback, layers, metrics, TensorBoard plugin) needs only
TensorFlow, Keras and TensorBoard; the `keras-homeostasis` experiment runner's
dependencies come with the `lab` extra. The wheel carries the example configs
of the top-level `configs/` folder as `keras_homeostasis/configs/`, where the
runner finds them by file name.
"""

import pathlib
import shutil

from setuptools import find_packages
from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = pathlib.Path(__file__).resolve().parent
URL = "https://github.com/keras-homeostasis/keras-homeostasis"


def read_version():
    # Read, not imported: importing the package would import TensorFlow.
    namespace = {}
    exec((ROOT / "keras_homeostasis" / "version.py").read_text(), namespace)
    return namespace["__version__"]


class BuildWithConfigs(build_py):
    """Copies `configs/*.yaml` into the built package (`keras_homeostasis/configs`)."""

    def run(self):
        super().run()
        target = pathlib.Path(self.build_lib) / "keras_homeostasis" / "configs"
        target.mkdir(parents=True, exist_ok=True)
        for config in sorted((ROOT / "configs").glob("*.yaml")):
            shutil.copyfile(config, target / config.name)


LAB = [
    "tensorflow-datasets>=4.9,<5",
    "scikit-learn>=1.3",
    "pyyaml>=6",
    "matplotlib>=3.7",
]
TUNING = ["keras-tuner>=1.4.8,<2", "scipy>=1.10"]
TEST = [
    "pytest>=8",
    "pytest-timeout>=2.3",
    "pytest-xdist>=3.5",
    "ruff>=0.6",
    "selenium>=4.20",
    "build>=1.0",
    "nbformat>=5",
]

setup(
    name="keras-homeostasis",
    version=read_version(),
    description="Homeostatic synaptic scaling for Keras 3 / TensorFlow",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    url=URL,
    project_urls={
        "Source": URL,
        "Changelog": f"{URL}/blob/main/CHANGELOG.md",
        "Documentation": f"{URL}/blob/main/docs/api.md",
        "Issues": f"{URL}/issues",
    },
    license="Apache-2.0",
    license_files=["LICENSE"],
    keywords=["keras", "tensorflow", "homeostasis", "synaptic scaling"],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "Intended Audience :: Developers",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Software Development :: Libraries :: Python Modules",
    ],
    python_requires=">=3.11",
    packages=find_packages(include=["keras_homeostasis", "keras_homeostasis.*"]),
    cmdclass={"build_py": BuildWithConfigs},
    include_package_data=True,
    package_data={
        "keras_homeostasis": ["tensorboard/static/*", "tensorboard/static/**/*"]
    },
    install_requires=[
        "tensorflow>=2.18,<3",
        "keras>=3.11,<4",
        "tensorboard>=2.18,<3",
        "numpy",
    ],
    extras_require={
        "lab": LAB,
        "tuning": TUNING,
        "dev": LAB + TUNING + TEST,
    },
    entry_points={
        "console_scripts": ["keras-homeostasis=keras_homeostasis.lab.cli:main"],
        "tensorboard_plugins": [
            "homeostasis = "
            "keras_homeostasis.tensorboard.homeostasis_loader:HomeostasisLoader",
        ],
    },
)
