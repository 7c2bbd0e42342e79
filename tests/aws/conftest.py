"""moto in-process (mock_aws): an EC2 with default subnets and AMIs, no network at all.

One moto backend per test module, fake credentials, and per test: its own provider name and
request id (so tests never see each other's instances), and ``make_ctx`` to build a real
Context (context.resolve) over a conf dir in tmp_path whose templates use moto's own AMI and
default subnets.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, Callable, Iterator

import pytest

from hostfactory_aws import context, records
from hostfactory_aws.admin import sandbox
from hostfactory_aws.cloud import session
from tests.support.hostfactory import HostFactory
from tests.support.server import REGION


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One moto backend per test module (a fresh one costs seconds); tests stay apart by
    their own provider name and request ids (fixtures ``provider`` and ``rid``).
    """
    from moto import mock_aws

    home = tmp_path_factory.mktemp("aws-home")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in sandbox.FAKE_CREDENTIALS.items():
            mp.setenv(name, value)
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        # nothing from the host's own AWS setup may leak in (profiles, endpoints)
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_CONFIG_FILE", str(home / "config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
        sandbox.make_moto_faithful()
        with mock_aws():
            yield


@pytest.fixture(scope="module")
def _boto3_sessions(moto: None) -> dict[tuple[Any, ...], Any]:
    return {}


@pytest.fixture(autouse=True)
def _one_boto3_session_per_module(request: pytest.FixtureRequest,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Contexts of one module share their boto3 session (Aws._make_session, memoised by its
    inputs): a fresh session reloads the EC2 model, ~0.4 s a test. Clients are still made
    by Aws.client from each context's own config."""
    if "moto" not in request.fixturenames:
        return
    sessions = request.getfixturevalue("_boto3_sessions")
    original = session.Aws._make_session

    def make_session(self: session.Aws) -> Any:
        cfg = self.config
        key = (cfg["AWS_REGION"], cfg.get("AWS_PROFILE"), cfg.get("AWS_CREDENTIAL_FILE"))
        if key not in sessions:
            sessions[key] = original(self)
        return sessions[key]

    monkeypatch.setattr(session.Aws, "_make_session", make_session)


@pytest.fixture
def provider(request: pytest.FixtureRequest) -> str:
    """A provider name of this test's own: what it launches is invisible to the others."""
    return "hf" + uuid.uuid5(uuid.NAMESPACE_URL, request.node.nodeid).hex[:12]


@pytest.fixture
def rid() -> str:
    """A fresh request id (the sandbox remembers ClientTokens, as EC2 does)."""
    return records.new_request_id("req")


@pytest.fixture(scope="module")
def ec2(moto: None) -> Any:
    """A plain boto3 client on the same moto backend, to look at what the plugin did."""
    import boto3

    return boto3.client("ec2", region_name=REGION)


@pytest.fixture(scope="module")
def ami(ec2: Any) -> str:
    """One of moto's bundled Amazon Linux AMIs (listing all of them takes seconds)."""
    images = ec2.describe_images(Owners=["amazon"], Filters=[
        {"Name": "name", "Values": ["amzn2-ami-hvm-*-x86_64-gp2"]}])["Images"]
    images = images or ec2.describe_images(Owners=["amazon"])["Images"]
    return sorted(i["ImageId"] for i in images)[0]


@pytest.fixture(scope="module")
def subnets(ec2: Any) -> list[str]:
    found = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    return sorted(s["SubnetId"] for s in found["Subnets"])[:3]


@pytest.fixture
def template(ami: str, subnets: list[str]) -> Callable[..., dict[str, Any]]:
    """A template dict as an admin writes it, over the sandbox's AMI and subnets."""

    def make(template_id: str = "OnDemand", **fields: Any) -> dict[str, Any]:
        tpl: dict[str, Any] = {"templateId": template_id, "maxNumber": 10, "imageId": ami,
                               "vmType": "m5.large", "subnetId": subnets[:2],
                               "instanceTags": "Project=grid;CostCenter=hpc",
                               "attributes": {"type": ["String", "X86_64"],
                                              "ncpus": ["Numeric", "2"],
                                              "nram": ["Numeric", "8192"]}}
        tpl.update(fields)
        if "vmTypes" in fields:
            tpl.pop("vmType", None)
        return {k: v for k, v in tpl.items() if v is not None}

    return make


@pytest.fixture
def make_ctx(tmp_path: Any, moto: None, provider: str) -> Callable[..., Any]:
    """Write conf files and resolve a Context exactly as the scripts do, from the env."""
    default_provider = provider

    def make(*tpls: dict[str, Any], provider: str = default_provider,
             **config: Any) -> context.Context:
        conf = tmp_path / "conf"
        conf.mkdir(exist_ok=True)
        (conf / "awsprov_config.json").write_text(json.dumps({"AWS_REGION": REGION, **config}))
        (conf / "awsprov_templates.json").write_text(json.dumps({"templates": list(tpls)}))
        ctx = context.resolve(hf_env(tmp_path, provider))
        context.ensure_dirs(ctx)  # as invoke_provider.run does before any verb
        return ctx

    return make


def hf_env(tmp_path: Any, provider: str) -> dict[str, str]:
    """The environment Symphony gives the scripts, over this test's tmp_path."""
    return {**os.environ, "HF_PROVIDER_NAME": provider,
            "HF_PROVIDER_CONFDIR": str(tmp_path / "conf"),
            "HF_PROVIDER_WORKDIR": str(tmp_path / "work"),
            "HF_PROVIDER_LOGDIR": str(tmp_path / "log")}


@pytest.fixture
def env(tmp_path: Any, moto: None, provider: str) -> dict[str, str]:
    return hf_env(tmp_path, provider)


@pytest.fixture(scope="module")
def described(ec2: Any) -> Callable[[list[str]], dict[str, dict[str, Any]]]:
    """Instances by id as EC2 lists them now."""

    def get(ids: list[str]) -> dict[str, dict[str, Any]]:
        out = {}
        for res in ec2.describe_instances(InstanceIds=list(ids))["Reservations"]:
            for inst in res["Instances"]:
                out[inst["InstanceId"]] = inst
        return out

    return get



@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A moto of this test alone (no default AMIs: they cost seconds per fresh backend), fake
    credentials, nothing real; the value is the test's own boto3 EC2 client on it."""
    from moto import mock_aws

    for key, value in sandbox.FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    sandbox.make_moto_faithful()
    with mock_aws():
        import boto3

        yield boto3.client("ec2", region_name=REGION)


@pytest.fixture
def inst(aws: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> HostFactory:
    """A HostFactory installation over ``aws``, its verbs run in this process
    (``HostFactory.invoke``); its env is also this process's env (the admin command
    resolves its dirs from os.environ)."""
    install = HostFactory(tmp_path, ec2=aws)
    for key in ("HF_PROVIDER_NAME", "HF_PROVIDER_CONFDIR", "HF_PROVIDER_WORKDIR",
                "HF_PROVIDER_LOGDIR"):
        monkeypatch.setenv(key, install.env[key])
    return install
