"""Fixtures of the keras-tuner tests (skipped without keras-tuner)."""

import pytest

pytest.importorskip("keras_tuner")

from tuning_testing import small_digits  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _own_heap(own_heap):
    yield


@pytest.fixture
def digits():
    return small_digits()
