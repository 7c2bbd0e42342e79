"""The admin command's installations: Symphony's layout and LSF's, with one template.

A fresh moto behind the shared sandbox server (tests/support) for each test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.hostfactory import HostFactory
from tests.support.server import SandboxServer


def _site(moto_server: SandboxServer, root: Path, lsf: bool) -> HostFactory:
    moto_server.reset()
    site = HostFactory(root, moto_server, lsf=lsf, config={"AWS_REQUEST_RETRY_ATTEMPTS": 0},
                       templates=[])
    site.write_templates([site.template("Plain")])
    moto_server.reset_calls()
    return site


@pytest.fixture
def site(moto_server: SandboxServer, tmp_path: Path) -> HostFactory:
    """A fresh moto and a fresh Symphony-style installation."""
    return _site(moto_server, tmp_path, lsf=False)


@pytest.fixture
def lsf_site(moto_server: SandboxServer, tmp_path: Path) -> HostFactory:
    """A fresh moto and a fresh LSF resource connector installation (PRO_* variables)."""
    return _site(moto_server, tmp_path, lsf=True)
