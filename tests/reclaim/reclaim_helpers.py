"""What the cloud does behind HostFactory's back, done to moto's EC2 backend directly.

moto never interrupts a Spot Instance by itself, and it leaves two things out that EC2
reports: the instance's SpotInstanceRequestId, and a real Status.UpdateTime on the Spot
request (moto always says 2015-01-01). These helpers fill both in on the objects of one
test (no class of moto is patched), then play EC2's part: the notice, the reclaim, a stop
from the console. The backend is the same whether the test talks to it in-process
(mock_aws) or through the sandbox server running in this pytest process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
for extra in (ROOT, ROOT / "tests" / "support"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from hostfactory_aws.admin import sandbox  # noqa: E402

REGION = "us-east-1"
PROVIDER = "awsinst"
OTHER_PROVIDER = "awsother"
PROVIDER_TAG = "hostfactory:provider"
REQUEST_TAG = "hostfactory:requestId"
TEMPLATE_TAG = "hostfactory:templateId"
RI, SPOT = "OnDemand-RI", "Fleet-Spot"


# -- moto's backend ---------------------------------------------------------------------------

def backend() -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    return ec2_backends[DEFAULT_ACCOUNT_ID][REGION]


def moto_instance(iid: str) -> Any:
    return backend().get_instance(iid)


_REQUEST_CLASS: list[type] = []


def _faithful_request_class() -> type:
    """moto's Spot request class with a settable Status.UpdateTime (made once)."""
    if _REQUEST_CLASS:
        return _REQUEST_CLASS[0]
    from moto.ec2.models.spot_requests import SpotInstanceRequest as MotoRequest

    class SpotInstanceRequest(MotoRequest):  # same name: moto's serializer keys on it
        """A Spot request whose Status.UpdateTime is the time of its last status change."""

        __module__ = MotoRequest.__module__  # moto's model registry wants moto.<service>

        @property
        def status(self) -> dict[str, Any]:
            out = dict(MotoRequest.status.fget(self))  # type: ignore[attr-defined]
            when = getattr(self, "hf_update_time", None)
            if when is not None:
                out["UpdateTime"] = when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            return out

    _REQUEST_CLASS.append(SpotInstanceRequest)
    return SpotInstanceRequest


def link_spot_requests() -> dict[str, str]:
    """Give every Spot Instance moto launched its SpotInstanceRequestId, as EC2 does.

    Returns {instance id: spot request id}.
    """
    cls = _faithful_request_class()
    out = {}
    for req in backend().spot_instance_requests.values():
        req.__class__ = cls
        req.instance.spot_instance_request_id = req.id
        out[req.instance.id] = req.id
    return out


def spot_request_of(iid: str) -> Any:
    for req in backend().spot_instance_requests.values():
        if req.instance.id == iid:
            return req
    raise KeyError(f"no spot request for {iid}")


def set_spot_status(iid: str, code: str, seconds_ago: float = 0, message: str = "") -> None:
    """EC2 changes the Spot request's status (e.g. the interruption notice)."""
    req = spot_request_of(iid)
    req._status_code = code
    req.status_message = message or f"Spot request status {code}"
    req.hf_update_time = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)


def set_instance_state(iid: str, name: str, reason_code: str = "",
                       reason_message: str = "") -> None:
    """EC2 moves the instance to ``name`` with a StateReason, as a reclaim would."""
    from moto.ec2.models.instances import StateReason

    codes = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48,
             "stopping": 64, "stopped": 80}
    inst = moto_instance(iid)
    inst._state.name = name
    inst._state.code = codes[name]
    inst.state_reason = StateReason(reason_message, reason_code)


def age_instance(iid: str, minutes: float) -> None:
    """Pretend the instance was launched ``minutes`` ago."""
    inst = moto_instance(iid)
    inst.launch_time = inst.launch_time - timedelta(minutes=minutes)


def state_name(ec2: Any, iid: str) -> str:
    res = ec2.describe_instances(InstanceIds=[iid])["Reservations"]
    return res[0]["Instances"][0]["State"]["Name"]


def launch_raw(ec2: Any, tags: dict[str, str] | None, count: int = 1) -> list[str]:
    """Instances launched outside HostFactory (another provider, or untagged)."""
    params: dict[str, Any] = {"ImageId": image_id(ec2), "MinCount": count, "MaxCount": count,
                              "InstanceType": "t3.micro"}
    if tags:
        params["TagSpecifications"] = [{"ResourceType": "instance", "Tags": [
            {"Key": k, "Value": v} for k, v in tags.items()]}]
    return [i["InstanceId"] for i in ec2.run_instances(**params)["Instances"]]


# -- a HostFactory installation ---------------------------------------------------------------

def image_id(ec2: Any) -> str:
    """An AMI to launch from. The tests run moto without its ~2,000 default AMIs (loading
    them costs seconds per fresh backend), so register one when there is none."""
    images = ec2.describe_images(Owners=["self", "amazon"])["Images"]
    if images:
        return images[0]["ImageId"]
    return ec2.register_image(
        Name="hf-reclaim-test", RootDeviceName="/dev/xvda", Architecture="x86_64",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
    )["ImageId"]


def templates(ec2: Any) -> list[dict[str, Any]]:
    image = image_id(ec2)
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]][:2]
    attrs = {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"],
             "nram": ["Numeric", "8192"]}
    return [
        {"templateId": RI, "maxNumber": 10, "providerApi": "RunInstances", "imageId": image,
         "vmType": "m5.large", "subnetId": subnets, "attributes": attrs},
        {"templateId": SPOT, "maxNumber": 10, "providerApi": "EC2Fleet", "fleetType": "instant",
         "priceType": "spot", "imageId": image, "vmTypes": {"m5.large": 1},
         "subnetId": subnets[0], "attributes": attrs},
    ]


class Install:
    """conf/work/log dirs of one provider instance, and its environment."""

    def __init__(self, root: Path, ec2: Any, endpoint: str | None = None) -> None:
        self.root = root
        self.conf_dir, self.work_dir, self.log_dir = root / "conf", root / "work", root / "log"
        self.conf_dir.mkdir(parents=True)
        self.endpoint = endpoint
        self.state_path = self.work_dir / f"{PROVIDER}-state.json"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
            "HOME": str(root),
            "HF_PROVIDER_NAME": PROVIDER, "HF_PROVIDER_CONFDIR": str(self.conf_dir),
            "HF_PROVIDER_WORKDIR": str(self.work_dir), "HF_PROVIDER_LOGDIR": str(self.log_dir),
            "HOSTFACTORY_AWS_PYTHON": sys.executable,
            "AWS_CONFIG_FILE": str(root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            **sandbox.FAKE_CREDENTIALS,
            **(sandbox.endpoint_env(endpoint) if endpoint else {}),
        }
        self.write_config()
        (self.conf_dir / "awsprov_templates.json").write_text(
            json.dumps({"templates": templates(ec2)}))

    def write_config(self, **overrides: Any) -> None:
        config = {"AWS_REGION": REGION, "AWS_REQUEST_RETRY_ATTEMPTS": 1, "LogLevel": "DEBUG",
                  **overrides}
        if self.endpoint:
            config["AWS_ENDPOINT_URL"] = self.endpoint
        (self.conf_dir / "awsprov_config.json").write_text(json.dumps(config))

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text())

    def log_text(self) -> str:
        return "".join(p.read_text() for p in sorted(self.log_dir.glob("*.log*")))


class Stdin:
    def __init__(self, text: str) -> None:
        self.text = text

    def isatty(self) -> bool:
        return False

    def read(self) -> str:
        return self.text

    def readline(self) -> str:
        line, _, self.text = self.text.partition("\n")
        return line + "\n" if line else ""


def run_verb(install: Install, verb: str, payload: Any) -> tuple[int, dict[str, Any]]:
    """One verb in this process (for mock_aws), as invoke_provider runs it."""
    from hostfactory_aws.invoke_provider import run

    return run([verb], Stdin(json.dumps(payload)), install.env)


def run_script(install: Install, verb: str, payload: Any) -> tuple[int, dict[str, Any]]:
    """``scripts/<verb>.sh -f FILE`` as HostFactory runs it: exit code and the one JSON."""
    path = install.root / f"in-{verb}.json"
    path.write_text(json.dumps(payload))
    proc = subprocess.run([str(SCRIPTS / f"{verb}.sh"), "-f", str(path)], capture_output=True,
                          text=True, cwd=install.root, env=install.env, timeout=120)
    answer = json.loads(proc.stdout)  # exactly one JSON document, or this fails
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, answer


def run_cli(install: Install, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """``hostfactory-aws ARGS`` as an admin runs it."""
    env = {**install.env, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "hostfactory_aws", *args], input=stdin,
                          capture_output=True, text=True, cwd=install.root, env=env,
                          timeout=120)


# -- the sandbox server -----------------------------------------------------------------------

class Server:
    """moto on loopback behind the call counter and the fault injector (tests/support)."""

    def __init__(self) -> None:
        from faults import FaultInjector

        self.faults = FaultInjector(sandbox.moto_app())
        self.counter = sandbox.CallCounter(self.faults)
        self.server, self.url = sandbox.serve(self.counter)
        import boto3

        self.ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=self.url,
                                aws_access_key_id="testing", aws_secret_access_key="testing")

    def reset(self) -> None:
        self.faults.clear()
        sandbox.reset_moto(self.url)
        self.reset_calls()

    def reset_calls(self) -> None:
        self.counter.clear()

    def calls(self) -> dict[str, int]:
        return self.counter.counts()
