"""End-to-end environment: the real scripts, run as HostFactory runs them, against moto's server.

One moto server (in this process, on 127.0.0.1) serves the whole e2e session, wrapped in a
call counter and a fault injector. Each test gets a fresh moto (reset), a fresh HostFactory
environment in tmp_path (conf/work/log dirs, config and templates over moto's own AMI and
default subnets), and runs the scripts from a directory that is not the repository.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
for extra in (ROOT, ROOT / "tests" / "support"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from faults import FaultInjector  # noqa: E402

from hostfactory_aws.admin import sandbox  # noqa: E402

REGION = "us-east-1"
PROVIDER = "awsinst"
PROVIDER_TAG = "hostfactory:provider"
REQUEST_TAG = "hostfactory:requestId"
TEMPLATE_TAG = "hostfactory:templateId"
RETURN_TAG = "hostfactory:returnId"
INSTANCE_TAGS = {"Project": "e2e", "CostCenter": "grid"}
RI, FLEET_OD, FLEET_SPOT = "OnDemand-RI", "Fleet-OnDemand", "Fleet-Spot"
WEIGHTS = {"m5.large": 1, "m5.xlarge": 2}
# AWS calls that change something: a rejected input must cause none of them.
CHANGING_ACTIONS = ("RunInstances", "CreateFleet", "CreateLaunchTemplate", "TerminateInstances",
                    "CreateTags", "DeleteFleets")
# The one line invoke_provider logs per call: "<verb> <ids> -> ok|FAILED in ..."
LOG_CALL = re.compile(r" hostfactory_aws: (\w+) .*?-> (ok|FAILED) in \d")


BULK_DRIVER = """
import io, json, sys
sys.path.insert(0, sys.argv[1])
from hostfactory_aws.cloud import session
from hostfactory_aws.invoke_provider import run
shared = {}
make_session = session.Aws._make_session
# one botocore session for all calls: its models are parsed once, not once per call
session.Aws._make_session = (
    lambda self: shared.get("s") or shared.setdefault("s", make_session(self)))
out = []
for payload in json.load(sys.stdin):
    stdin = io.StringIO(json.dumps(payload))
    out.append(run([sys.argv[2]], stdin))
sys.stdout.write(json.dumps(out))
"""


class MotoServer:
    """moto on loopback, with its call counter and fault injector."""

    def __init__(self) -> None:
        self.faults = FaultInjector(sandbox.moto_app())
        self.counter = sandbox.CallCounter(self.faults)
        self.server, self.url = sandbox.serve(self.counter)
        self._ec2: Any = None
        self._image: str | None = None

    def reset(self) -> None:
        """A fresh moto, no faults, no counted calls."""
        self.faults.clear()
        sandbox.reset_moto(self.url)
        self.reset_calls()

    def reset_calls(self) -> None:
        self.counter.clear()

    def calls(self) -> dict[str, int]:
        """AWS calls received since the last reset, by action (a copy)."""
        return self.counter.counts()

    @property
    def ec2(self) -> Any:
        """A boto3 EC2 client of the test itself (to look behind HostFactory's back)."""
        if self._ec2 is None:
            import boto3

            self._ec2 = boto3.client(
                "ec2", region_name=REGION, endpoint_url=self.url,
                aws_access_key_id="testing", aws_secret_access_key="testing",
                aws_session_token="testing")
        return self._ec2

    def instances(self, **filters: list[str]) -> dict[str, dict[str, Any]]:
        """Every instance moto holds (optionally filtered), by id."""
        flt = [{"Name": k.replace("_", "-"), "Values": v} for k, v in filters.items()]
        out = {}
        for page in self.ec2.get_paginator("describe_instances").paginate(Filters=flt):
            for res in page["Reservations"]:
                for inst in res["Instances"]:
                    out[inst["InstanceId"]] = inst
        return out

    def image_id(self) -> str:
        """A moto-owned Amazon Linux AMI; moto's AMI ids survive a reset, so look once."""
        if self._image is None:
            images = self.ec2.describe_images(Owners=["amazon"])["Images"]  # slow: ~1 s
            linux = [i for i in images if "amzn" in (i.get("Name") or "")]
            self._image = (linux or images)[0]["ImageId"]
        return self._image


@pytest.fixture(scope="session")
def moto_server() -> Any:
    server = MotoServer()
    yield server
    server.server.shutdown()


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


class HostFactory:
    """A HostFactory installation in tmp_path that calls the scripts like HostFactory does."""

    def __init__(self, root: Path, server: MotoServer) -> None:
        self.server = server
        self.conf_dir = root / "conf"
        self.work_dir = root / "work"
        self.log_dir = root / "log"
        self.cwd = root / "elsewhere"
        self.inputs = root / "inputs"
        for d in (self.conf_dir, self.cwd, self.inputs):
            d.mkdir()
        self.config_path = self.conf_dir / "awsprov_config.json"
        self.templates_path = self.conf_dir / "awsprov_templates.json"
        self.state_path = self.work_dir / f"{PROVIDER}-state.json"
        self.made: Counter[tuple[str, bool]] = Counter()  # (verb, exit 0) of every call
        self._made_lock = threading.Lock()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(root),
            "HF_PROVIDER_NAME": PROVIDER,
            "HF_PROVIDER_CONFDIR": str(self.conf_dir),
            "HF_PROVIDER_WORKDIR": str(self.work_dir),
            "HF_PROVIDER_LOGDIR": str(self.log_dir),
            "HOSTFACTORY_AWS_PYTHON": sys.executable,
            # No stray AWS config of the machine may leak in, and no metadata service.
            "AWS_CONFIG_FILE": str(root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            **sandbox.FAKE_CREDENTIALS,
            **sandbox.endpoint_env(server.url),
        }
        self.image_id = self._image()
        self.subnets = [s["SubnetId"] for s in server.ec2.describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]][:2]
        self.write_config()
        self.write_templates(self.default_templates())

    def _image(self) -> str:
        return self.server.image_id()

    # -- files ------------------------------------------------------------------------------

    def write_config(self, **overrides: Any) -> dict[str, Any]:
        """awsprov_config.json pointing at the moto server; overrides replace keys."""
        config = {"AWS_REGION": REGION, "AWS_ENDPOINT_URL": self.server.url,
                  "AWS_REQUEST_RETRY_ATTEMPTS": 1, "LogLevel": "DEBUG", **overrides}
        self.config_path.write_text(json.dumps({k: v for k, v in config.items()
                                                if v is not None}, indent=1))
        return config

    def default_templates(self) -> list[dict[str, Any]]:
        tag_string = ";".join(f"{k}={v}" for k, v in INSTANCE_TAGS.items())
        return [
            {"templateId": RI, "maxNumber": 10, "providerApi": "RunInstances",
             "imageId": self.image_id, "vmType": "m5.large", "subnetId": self.subnets,
             "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"],
                            "nram": ["Numeric", "8192"]},
             "instanceTags": tag_string},
            {"templateId": FLEET_OD, "maxNumber": 20, "providerApi": "EC2Fleet",
             "fleetType": "instant", "priceType": "ondemand", "imageId": self.image_id,
             "vmTypes": dict(WEIGHTS), "subnetId": self.subnets,
             # moto then mixes the types (it otherwise launches only the first one)
             "allocationStrategy": "diversified",
             "attributes": {"type": "X86_64", "ncpus": 2, "nram": 8192},
             "instanceTags": tag_string},
            {"templateId": FLEET_SPOT, "maxNumber": 10, "providerApi": "EC2Fleet",
             "fleetType": "instant", "priceType": "spot", "imageId": self.image_id,
             "vmTypes": {"m5.large": 1}, "subnetId": self.subnets[0],
             "allocationStrategy": "priceCapacityOptimized",
             "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"],
                            "nram": ["Numeric", "8192"]},
             "instanceTags": tag_string},
        ]

    def write_templates(self, templates: Any) -> None:
        self.templates_path.write_text(json.dumps({"templates": templates}, indent=1))

    def state_bytes(self) -> bytes | None:
        return self.state_path.read_bytes() if self.state_path.exists() else None

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text())

    def log_text(self) -> str:
        return "".join(p.read_text() for p in sorted(self.log_dir.glob("*.log*")))

    def logged_calls(self) -> Counter[tuple[str, bool]]:
        """(verb, succeeded) of every call the plugin log records."""
        return Counter((m.group(1), m.group(2) == "ok")
                       for m in LOG_CALL.finditer(self.log_text()))

    # -- calling the scripts ----------------------------------------------------------------

    def command(self, verb: str, payload: Any = None, raw: str | None = None,
                stdin: bool = False) -> tuple[list[str], str | None]:
        """argv for one call, and the text for standard input (None: input via -f)."""
        text = raw if raw is not None else json.dumps({} if payload is None else payload)
        script = str(SCRIPTS / f"{verb}.sh")
        if stdin:
            return [script], text
        fd, path = tempfile.mkstemp(prefix="hf_in_", dir=self.inputs)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        return [script, "-f", path], None

    def call(self, verb: str, payload: Any = None, raw: str | None = None,
             stdin: bool = False) -> tuple[int, dict[str, Any]]:
        """Run ``scripts/<verb>.sh`` once: (exit code, the one JSON document it printed)."""
        argv, text = self.command(verb, payload, raw, stdin)
        feed: dict[str, Any] = {"input": text} if text is not None else {
            "stdin": subprocess.DEVNULL}
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=self.cwd,
                              env=self.env, timeout=120, **feed)
        code, answer = check_output(verb, proc.returncode, proc.stdout, proc.stderr)
        with self._made_lock:
            self.made[(verb, code == 0)] += 1
        return code, answer

    def call_in_one_process(self, verb: str,
                            payloads: list[Any]) -> list[tuple[int, dict[str, Any]]]:
        """Many calls through invoke_provider.run in ONE interpreter: for bulk test setup.

        Same code, same environment and files as the scripts; only the process start and
        the boto3 import are paid once instead of per call.
        """
        proc = subprocess.run([sys.executable, "-c", BULK_DRIVER, str(ROOT), verb],
                              input=json.dumps(payloads), capture_output=True, text=True,
                              cwd=self.cwd, env=self.env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = [tuple(pair) for pair in json.loads(proc.stdout)]
        with self._made_lock:
            for code, _ in out:
                self.made[(verb, code == 0)] += 1
        return out  # type: ignore[return-value]

    def call_many(self, verb: str, payloads: list[Any],
                  parallel: int = 4) -> list[tuple[int, dict[str, Any]]]:
        """Several calls at once, as HostFactory may make them; answers in payload order."""
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            return list(pool.map(lambda p: self.call(verb, p), payloads))

    def ok(self, verb: str, payload: Any = None, **kw: Any) -> dict[str, Any]:
        code, answer = self.call(verb, payload, **kw)
        assert code == 0, f"{verb} failed: {answer}"
        return answer

    # -- the HostFactory cycle --------------------------------------------------------------

    def templates(self, stdin: bool = False) -> dict[str, dict[str, Any]]:
        answer = self.ok("getAvailableTemplates", {}, stdin=stdin)
        return {t["templateId"]: t for t in answer["templates"]}

    def request(self, template_id: str, count: int, stdin: bool = False) -> str:
        answer = self.ok("requestMachines",
                         {"template": {"templateId": template_id, "machineCount": count}},
                         stdin=stdin)
        assert answer["requestId"].startswith("req-"), answer
        return answer["requestId"]

    def status(self, *ids: str) -> list[dict[str, Any]]:
        answer = self.ok("getRequestStatus", {"requests": [{"requestId": i} for i in ids]})
        assert [r["requestId"] for r in answer["requests"]] == list(ids)
        return answer["requests"]

    def wait(self, rid: str, polls: int = 8) -> dict[str, Any]:
        """Poll getRequestStatus until the request is no longer running (bounded)."""
        for i in range(polls):
            answer = self.status(rid)[0]
            if answer["status"] != "running":
                return answer
            time.sleep(0.2 * (i + 1))
        raise AssertionError(f"{rid} still running after {polls} polls: {answer}")

    def give_back(self, machines: list[dict[str, Any]]) -> str:
        answer = self.ok("requestReturnMachines", {"machines": [
            {"name": m["name"], "machineId": m["machineId"]} for m in machines]})
        assert answer["requestId"].startswith("ret-"), answer
        return answer["requestId"]


def check_output(verb: str, code: int, stdout: str, stderr: str) -> tuple[int, dict[str, Any]]:
    """What HostFactory demands of every call: exit 0/1 and exactly one JSON object."""
    try:
        answer = json.loads(stdout)
    except ValueError as exc:
        raise AssertionError(f"{verb}: stdout is not exactly one JSON document ({exc}):\n"
                             f"{stdout!r}\nstderr: {stderr[-2000:]}") from None
    assert isinstance(answer, dict), f"{verb}: answer is not an object: {stdout!r}"
    assert code in (0, 1), f"{verb}: exit {code}; stderr: {stderr[-2000:]}"
    if code == 1:
        assert isinstance(answer.get("message"), str) and answer["message"], answer
    return code, answer


@pytest.fixture
def hf(moto_server: MotoServer, tmp_path: Path) -> HostFactory:
    """A fresh moto and a fresh HostFactory environment."""
    moto_server.reset()
    env = HostFactory(tmp_path, moto_server)
    moto_server.reset_calls()
    return env
