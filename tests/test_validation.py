"""`check_known_keys`: the one unknown-key check of configs and search spaces."""

import pytest

from keras_homeostasis.lab.config import ConfigError
from keras_homeostasis.lab.config import validate_config
from keras_homeostasis.tuning.search_space import validate_search_space
from keras_homeostasis.validation import check_known_keys


def test_known_keys_pass():
    check_known_keys({"a": 1}, ("a", "b"), "config key", "section")


def test_unknown_key_is_named_by_its_path_with_the_allowed_ones():
    with pytest.raises(ValueError) as info:
        check_known_keys({"b": 1, "z": 2, "a": 3}, ("a", "b"), "config key", "s")
    assert (
        str(info.value) == "Unknown config key `s.z`. Allowed keys in `s`: ['a', 'b']"
    )


def test_top_level_key_and_error_class():
    with pytest.raises(
        ConfigError, match=r"^Unknown config section `x`\. Allowed sections"
    ):
        check_known_keys({"x": 1}, {"a": 0}, "config section", error=ConfigError)


def test_configs_and_search_spaces_share_it():
    with pytest.raises(ConfigError, match=r"Unknown config key `training\.epoch`\."):
        validate_config({"training": {"epoch": 3}})
    with pytest.raises(ValueError, match=r"Unknown search space parameter `s\.rat`\."):
        validate_search_space({"rat": 0.1}, path="s")
