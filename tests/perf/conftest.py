"""Call-count fixtures: the real scripts as separate processes against moto's server.

No timing anywhere: these tests count the AWS calls each verb makes (the sandbox's call
counter) and the modules it imports, which are what keep a verb fast at grid scale.
One moto server per module, reset before each test; each test gets its own HostFactory
conf/work/log dirs in tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hostfactory_aws.admin import sandbox  # noqa: E402

PROVIDER = "perf"
ATTRIBUTES = {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"],
              "ncores": ["Numeric", "1"], "nram": ["Numeric", "8192"]}

# Many requestMachines in one process (set-up only: what is counted runs as a script).
SETUP_DRIVER = """
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
    code, answer = run(["requestMachines"], io.StringIO(json.dumps(payload)))
    if code:
        raise SystemExit(f"set-up requestMachines failed: {answer}")
    out.append(answer["requestId"])
sys.stdout.write(json.dumps(out))
"""


class Sandbox:
    """moto on loopback with the call counter."""

    def __init__(self) -> None:
        self.counter = sandbox.CallCounter(sandbox.moto_app())
        self.server, self.url = sandbox.serve(self.counter)
        import boto3

        self.ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=self.url,
                                aws_access_key_id="testing", aws_secret_access_key="testing")
        self._image: str | None = None

    def _http(self, method: str, path: str) -> bytes:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(urllib.request.Request(self.url + path, method=method),
                         timeout=60) as resp:
            return resp.read()

    def reset(self) -> None:
        self._http("POST", "/moto-api/reset")
        self.reset_calls()

    def reset_calls(self) -> None:
        self._http("DELETE", "/_hf/calls")

    def calls(self) -> dict[str, int]:
        return json.loads(self._http("GET", "/_hf/calls"))

    def image_id(self) -> str:
        if self._image is None:  # moto's AMI ids survive a reset
            self._image = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        return self._image


@pytest.fixture(scope="module")
def moto_sandbox() -> Any:
    box = Sandbox()
    yield box
    box.server.shutdown()


class HostFactory:
    """One provider's conf/work/log dirs, and the scripts run as HostFactory runs them."""

    def __init__(self, root: Path, box: Sandbox) -> None:
        self.box = box
        self.root = root
        self.conf = root / "conf"
        self.work = root / "work"
        self.conf.mkdir()
        self.templates_path = self.conf / "awsprov_templates.json"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(root),
            "HF_PROVIDER_NAME": PROVIDER,
            "HF_PROVIDER_CONFDIR": str(self.conf),
            "HF_PROVIDER_WORKDIR": str(self.work),
            "HF_PROVIDER_LOGDIR": str(root / "log"),
            "HOSTFACTORY_AWS_PYTHON": sys.executable,
            "AWS_CONFIG_FILE": str(root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "127.0.0.1,localhost",
            **sandbox.FAKE_CREDENTIALS,
            **sandbox.endpoint_env(box.url),
        }
        subnets = [s["SubnetId"] for s in box.ec2.describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]][:2]
        self.base = {"maxNumber": -1, "imageId": box.image_id(), "subnetId": subnets,
                     "attributes": ATTRIBUTES}
        (self.conf / "awsprov_config.json").write_text(json.dumps(
            {"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": box.url}))
        self.write_templates([
            {"templateId": "RI", "providerApi": "RunInstances", "vmType": "m5.large"},
            {"templateId": "Fleet", "providerApi": "EC2Fleet", "fleetType": "instant",
             "vmTypes": {"m5.large": 1}},
        ])
        self._n = 0

    def write_templates(self, templates: list[dict[str, Any]]) -> None:
        self.templates_path.write_text(json.dumps(
            {"templates": [{**self.base, **t} for t in templates]}, indent=1))

    def run(self, verb: str, data: dict[str, Any], extra_env: dict[str, str] | None = None
            ) -> tuple[int, dict[str, Any], str]:
        """One script call; returns (exit code, answer, stderr)."""
        self._n += 1
        path = self.root / f"in-{self._n}.json"
        path.write_text(json.dumps(data))
        proc = subprocess.run([str(ROOT / "scripts" / f"{verb}.sh"), "-f", str(path)],
                              env={**self.env, **(extra_env or {})}, cwd=self.root,
                              capture_output=True, text=True, timeout=600)
        return proc.returncode, json.loads(proc.stdout), proc.stderr

    def ok(self, verb: str, data: dict[str, Any]) -> dict[str, Any]:
        code, answer, err = self.run(verb, data)
        assert code == 0, (verb, answer, err[-2000:])
        return answer

    def counted(self, verb: str, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        """Run one verb; return its answer and the AWS calls it made, by action."""
        self.box.reset_calls()
        answer = self.ok(verb, data)
        return answer, self.box.calls()

    def imports(self, verb: str, data: dict[str, Any]) -> set[str]:
        """Top-level packages the verb's process imported (python -X importtime)."""
        code, answer, err = self.run(verb, data, {"PYTHONPROFILEIMPORTTIME": "1"})
        assert code == 0, (verb, answer, err[-2000:])
        found = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+([\w.]+)", err, re.M)
        return {name.split(".")[0] for name in found}

    def request_many(self, template_id: str, count: int, machines: int) -> list[str]:
        """`count` requestMachines in one set-up process; returns the request ids."""
        payloads = [{"template": {"templateId": template_id, "machineCount": machines}}
                    for _ in range(count)]
        proc = subprocess.run([sys.executable, "-c", SETUP_DRIVER, str(ROOT)],
                              input=json.dumps(payloads), env=self.env, cwd=self.root,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)


@pytest.fixture
def hf(tmp_path: Path, moto_sandbox: Sandbox) -> HostFactory:
    moto_sandbox.reset()
    return HostFactory(tmp_path, moto_sandbox)
