"""Fixtures for the admin command's tests (helpers in clisupport.py).

One moto server on 127.0.0.1 for the session; each test gets a fresh moto (reset) and a
fresh installation in tmp_path.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clisupport import Server, Site  # noqa: E402


@pytest.fixture(scope="session")
def server() -> Any:
    srv = Server()
    yield srv
    srv.server.shutdown()


@pytest.fixture
def site(server: Server, tmp_path: Path) -> Site:
    """A fresh moto and a fresh Symphony-style installation."""
    server.reset()
    s = Site(tmp_path, server)
    server.reset_calls()
    return s


@pytest.fixture
def lsf_site(server: Server, tmp_path: Path) -> Site:
    """A fresh moto and a fresh LSF resource connector installation (PRO_* variables)."""
    server.reset()
    s = Site(tmp_path, server, lsf=True)
    server.reset_calls()
    return s
