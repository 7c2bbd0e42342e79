"""Fixtures for every test directory."""

from __future__ import annotations

import logging
from typing import Iterator

import pytest

from tests.support.fixtures import hf, moto_server  # noqa: F401  (shared by every suite)


@pytest.fixture(autouse=True)
def _drop_plugin_log_handlers() -> Iterator[None]:
    """invoke_provider.run() adds a file handler to the root logger once per process; tests
    that call it in-process must not leave it (or its level) for the next test."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if getattr(handler, "_hostfactory_aws", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
