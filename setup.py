"""Packaging for keras_homeostasis."""

from setuptools import find_packages
from setuptools import setup

setup(
    name="keras-homeostasis",
    version="0.1.0",
    description="Homeostatic synaptic scaling for Keras 3 / TensorFlow",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["keras_homeostasis", "keras_homeostasis.*"]),
    include_package_data=True,
    package_data={"keras_homeostasis": ["tensorboard/static/*", "tensorboard/static/**/*"]},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<3.16",
        "tensorflow-datasets>=4.9,<5",
        "tensorboard>=2.21,<2.22",
        "scikit-learn>=1.3",
        "pyyaml>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    extras_require={
        "tuning": ["keras-tuner>=1.4.8,<1.5", "scipy>=1.10"],
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "ruff>=0.6",
            "selenium>=4.20",
            "keras-tuner>=1.4.8,<1.5",
            "scipy>=1.10",
            "build>=1.0",
            "nbformat>=5",
        ],
    },
    entry_points={
        "console_scripts": ["keras-homeostasis=keras_homeostasis.lab.cli:main"],
        "tensorboard_plugins": [
            "homeostasis = "
            "keras_homeostasis.tensorboard.homeostasis_loader:HomeostasisLoader",
        ],
    },
)
