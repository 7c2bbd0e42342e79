"""Fixtures for the reclaim tests: in-process moto (mock_aws) or the sandbox server.

Both share moto's backend in this process, which is how the tests play EC2's part
(interruption notices, reclaims, stops from the console): see reclaim_helpers.

Not a conftest.py: a conftest module in every test directory made ``from conftest import``
ambiguous when several directories are collected in one
run. Each test module imports the fixtures it uses from here (as ``*_fixture``; pytest
knows them by their ``name``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest
import reclaim_helpers as rh


@pytest.fixture(name="aws")
def aws_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """In-process moto: a boto3 EC2 client of the test, fake credentials, nothing real."""
    from moto import mock_aws

    from hostfactory_aws.admin import sandbox

    for key, value in sandbox.FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")  # seconds per test otherwise
    sandbox.make_moto_faithful()
    with mock_aws():
        import boto3

        yield boto3.client("ec2", region_name=rh.REGION)


@pytest.fixture(name="inst")
def inst_fixture(aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> rh.Install:
    """A provider installation over in-process moto; its env is also this process's env
    (the admin command resolves its dirs from os.environ)."""
    install = rh.Install(tmp_path, aws)
    for key in ("HF_PROVIDER_NAME", "HF_PROVIDER_CONFDIR", "HF_PROVIDER_WORKDIR",
                "HF_PROVIDER_LOGDIR"):
        monkeypatch.setenv(key, install.env[key])
    return install


@pytest.fixture(scope="module", name="server")
def server_fixture() -> Iterator[rh.Server]:
    """The sandbox server, for this module; moto without its default AMIs meanwhile."""
    before = os.environ.get("MOTO_EC2_LOAD_DEFAULT_AMIS")
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    srv = rh.Server()
    yield srv
    srv.server.shutdown()
    if before is None:
        os.environ.pop("MOTO_EC2_LOAD_DEFAULT_AMIS", None)
    else:
        os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = before


@pytest.fixture(name="site")
def site_fixture(server: rh.Server, tmp_path: Path) -> rh.Install:
    """A fresh moto behind the server, and an installation whose scripts talk to it."""
    server.reset()
    install = rh.Install(tmp_path, server.ec2, endpoint=server.url)
    server.reset_calls()
    return install
