"""Unit-test fixtures: pure modules only, no AWS, no mocks.

The one shared concern is logging: invoke_provider.run() attaches a file handler to the root
logger (once per process), so each test that goes through run() gets it removed afterwards.
"""

from __future__ import annotations

import logging
from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def _drop_plugin_log_handlers() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if getattr(handler, "_hostfactory_aws", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
