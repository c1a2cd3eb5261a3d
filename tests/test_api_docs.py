"""docs/api.md is the reference generated from the current docstrings."""

import pathlib

from homeostasis_testing import load_script

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "generate_api.py"


def generator():
    return load_script(SCRIPT)


def test_the_api_reference_is_up_to_date():
    api = generator()
    committed = api.OUTPUT.read_text(encoding="utf-8")
    assert api.render() == committed, f"docs/api.md is stale: run {api.COMMAND}"


def test_the_reference_covers_every_exported_name():
    import keras_homeostasis
    from keras_homeostasis import layers
    from keras_homeostasis import metrics
    from keras_homeostasis import tensorboard
    from keras_homeostasis import tuning

    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    for module in (keras_homeostasis, layers, metrics, tensorboard, tuning):
        for name in module.__all__:
            assert f"### `{module.__name__}.{name}`" in text
    assert "#### `UsageReport.from_model`" in text
