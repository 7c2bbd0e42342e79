"""The shared fixtures (registered for every suite by tests/conftest.py).

- ``moto_server``: the sandbox server (tests/support/server.py), one per test process.
- ``hf``: a fresh moto behind it and a fresh HostFactory installation in tmp_path
  (tests/support/hostfactory.py), its call counts cleared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.support.hostfactory import HostFactory
from tests.support.server import SandboxServer


@pytest.fixture(scope="session")
def moto_server() -> Iterator[SandboxServer]:
    server = SandboxServer()
    yield server
    server.stop()


@pytest.fixture
def hf(moto_server: SandboxServer, tmp_path: Path) -> HostFactory:
    """A fresh moto and a fresh HostFactory environment."""
    moto_server.reset()
    env = HostFactory(tmp_path, moto_server)
    moto_server.reset_calls()
    return env
