"""The sandbox server every suite and bench/ use: moto on 127.0.0.1, in this process.

moto is made EC2-faithful in hostfactory_aws/admin/sandbox.py (product code: the demo uses
it too); this wraps its WSGI app in fault injection (tests/support/faults.py) and the call
counter (sandbox.CallCounter), serves it on loopback, and gives the test its own boto3
clients to look behind the plugin's back. moto's backends are global to the process, so
one server per process is enough: each test resets it.
"""

from __future__ import annotations

import base64
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ runs outside pytest
    sys.path.insert(0, str(ROOT))

from hostfactory_aws.admin import sandbox  # noqa: E402
from tests.support.faults import FaultInjector  # noqa: E402

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's


class TimedApp:
    """WSGI middleware: seconds the wrapped app spent on requests (body included)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seconds = 0.0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        start = time.perf_counter()
        try:
            body = list(self.app(environ, start_response))  # serialisation is moto's time too
        finally:
            with self._lock:
                self.seconds += time.perf_counter() - start
        return body


class SandboxServer:
    """moto on loopback: faults -> moto, counted by the call counter, timed for bench/."""

    def __init__(self) -> None:
        self.faults = FaultInjector(sandbox.moto_app())
        self.counter = sandbox.CallCounter(self.faults)
        self.timed = TimedApp(self.counter)
        self.server, self.url = sandbox.serve(self.timed)
        self._clients: dict[str, Any] = {}
        self._image: str | None = None

    def stop(self) -> None:
        self.server.shutdown()

    def reset(self) -> None:
        """A fresh moto, no faults, no counted calls."""
        self.faults.clear()
        sandbox.reset_moto(self.url)
        self.reset_calls()

    def reset_calls(self) -> None:
        self.counter.clear()
        self.timed.seconds = 0.0

    def calls(self) -> dict[str, int]:
        """AWS calls received since the last reset, by action (a copy)."""
        return self.counter.counts()

    def client(self, service: str) -> Any:
        """The test's own boto3 client, to set things up and look behind the plugin's back."""
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.client(
                service, region_name=REGION, endpoint_url=self.url,
                aws_access_key_id="testing", aws_secret_access_key="testing",
                aws_session_token="testing")
        return self._clients[service]

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    def instances(self, **filters: list[str]) -> dict[str, dict[str, Any]]:
        """Every instance moto holds (optionally filtered), by id."""
        return instances(self.ec2, **filters)

    def image_id(self) -> str:
        """An AMI to launch from; moto's own AMI ids survive a reset, so look once."""
        if self._image is None:
            image, owned = find_image(self.ec2)
            if not owned:
                return image  # registered in this moto: gone after the next reset
            self._image = image
        return self._image

    def user_data(self, iid: str) -> str:
        attr = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        value = attr.get("UserData", {}).get("Value", "")
        return base64.b64decode(value).decode() if value else ""


def instances(ec2: Any, **filters: list[str]) -> dict[str, dict[str, Any]]:
    """Every instance the EC2 behind ``ec2`` holds (optionally filtered), by id."""
    flt = [{"Name": k.replace("_", "-"), "Values": v} for k, v in filters.items()]
    out = {}
    for page in ec2.get_paginator("describe_instances").paginate(Filters=flt):
        for res in page["Reservations"]:
            for inst in res["Instances"]:
                out[inst["InstanceId"]] = inst
    return out


def find_image(ec2: Any) -> tuple[str, bool]:
    """(an AMI to launch from, whether it is moto's own).

    moto's bundled Amazon Linux AMIs when it loaded them; with MOTO_EC2_LOAD_DEFAULT_AMIS
    false (seconds faster per fresh backend) there are none, so one is registered.
    """
    images = ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn*"]}])["Images"]
    if images:
        return images[0]["ImageId"], True
    images = ec2.describe_images(Owners=["self", "amazon"])["Images"]
    if images:
        return images[0]["ImageId"], images[0].get("ImageOwnerAlias") == "amazon"
    return ec2.register_image(
        Name="hf-test", RootDeviceName="/dev/xvda", Architecture="x86_64",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
    )["ImageId"], False


def image_id(ec2: Any) -> str:
    return find_image(ec2)[0]


def default_subnets(ec2: Any) -> list[str]:
    """Two of moto's default subnets (one per zone)."""
    return [s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]][:2]


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def index_moto_tags() -> None:
    """Make moto find a resource's tags by its id instead of scanning every tag it holds.

    moto 5 answers ``get_tags()`` (used for each instance listed, filtered or tagged) by
    running a regex over every tag of every resource in the account, so DescribeInstances
    over 5,000 tagged instances takes minutes (quadratic); EC2 does not behave like that.
    The same answer from the backend's own per-resource dict keeps moto's time linear. Only
    the sandbox's speed changes: the plugin sends and receives exactly the same (bench/).
    """
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    if getattr(TaggedEC2Resource.get_tags, "_indexed", False):
        return

    def get_tags(self: Any) -> list[dict[str, str]]:
        if not self.id:
            return []
        tags = self.ec2_backend.tags.get(self.id) or {}
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(self.id), "")
        return [{"resource_id": self.id, "key": k, "value": v, "resource_type": kind}
                for k, v in tags.items()]

    get_tags._indexed = True  # type: ignore[attr-defined]
    TaggedEC2Resource.get_tags = get_tags  # type: ignore[method-assign]
