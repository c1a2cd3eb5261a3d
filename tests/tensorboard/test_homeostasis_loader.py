"""Discovery through the `tensorboard_plugins` entry point, and flag defaults."""

import importlib

import pytest
from tensorboard import program
from tensorboard.backend import application
from tensorboard.plugins import base_plugin
from tensorboard.plugins.core import core_plugin

from keras_homeostasis.tensorboard.homeostasis_loader import HomeostasisLoader
from keras_homeostasis.tensorboard.homeostasis_plugin import HomeostasisPlugin

ENTRY_POINT = "keras_homeostasis.tensorboard.homeostasis_loader:HomeostasisLoader"


def test_the_entry_point_resolves(installed_plugins, package_installed):
    if not package_installed:
        pytest.skip("keras-homeostasis is not installed: run `pip install -e .`")
    assert installed_plugins.get("homeostasis") == ENTRY_POINT
    module, _, name = installed_plugins["homeostasis"].partition(":")
    loaded = getattr(importlib.import_module(module), name)
    loader = application.make_plugin_loader(loaded)
    assert isinstance(loader, HomeostasisLoader)
    plugin = loader.load(base_plugin.TBContext())
    assert isinstance(plugin, HomeostasisPlugin)
    assert plugin.plugin_name == "homeostasis"
    assert plugin.frontend_metadata().es_module_path == "/index.js"


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], 1000),
        (["--samples_per_plugin=homeostasis=7"], 7),
        (["--samples_per_plugin=scalars=50,homeostasis=0"], 0),
    ],
)
def test_kept_samples_default_to_a_thousand(tmp_path, argv, expected):
    board = program.TensorBoard(
        plugins=[core_plugin.CorePluginLoader, HomeostasisLoader]
    )
    board.configure(["tensorboard", f"--logdir={tmp_path}", *argv])
    assert board.flags.samples_per_plugin["homeostasis"] == expected
