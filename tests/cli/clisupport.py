"""Helpers for the admin command's tests: ``python -m hostfactory_aws ...`` as a process.

One moto server (in this process, on 127.0.0.1) serves the module; each test gets a fresh
moto (reset) and a fresh installation in tmp_path (conf/work/log dirs, config and templates
over moto's own AMI and default subnets). The server is wrapped in a call counter and a
switch that answers chosen actions with UnauthorizedOperation, as EC2 does when the IAM
policy lacks an action.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hostfactory_aws.admin import sandbox  # noqa: E402

REGION = "us-east-1"
PROVIDER = "awscli"
ACCOUNT = "123456789012"  # moto's


class Deny:
    """WSGI middleware: answer chosen actions with UnauthorizedOperation (403) until cleared."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.actions: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self._lock:
            denied = set(self.actions)
        if denied:
            action = sandbox.request_action(environ)
            if action in denied:
                body = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>"
                        b"<Code>UnauthorizedOperation</Code><Message>You are not authorized to "
                        b"perform this operation. Encoded authorization failure message: x"
                        b"</Message></Error></Errors><RequestID>r</RequestID></Response>"
                        )
                start_response("403 Forbidden", [("Content-Type", "text/xml"),
                                                  ("Content-Length", str(len(body)))])
                return [body]
        return self.app(environ, start_response)


class Server:
    """moto on loopback, with a call counter and the Deny switch."""

    def __init__(self) -> None:
        self.deny = Deny(sandbox.moto_app())
        self.counter = sandbox.CallCounter(self.deny)
        self.server, self.url = sandbox.serve(self.counter)
        self._clients: dict[str, Any] = {}
        self._image: str | None = None

    def reset(self) -> None:
        self.deny.actions.clear()
        sandbox.reset_moto(self.url)
        self.reset_calls()

    def reset_calls(self) -> None:
        self.counter.clear()

    def calls(self) -> dict[str, int]:
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

    def image_id(self) -> str:
        """An AMI of moto's own (the same after every reset; listing them all is slow)."""
        if self._image is None:
            images = self.ec2.describe_images(
                Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn*"]}])["Images"]
            self._image = images[0]["ImageId"]
        return self._image

    def instances(self) -> dict[str, dict[str, Any]]:
        out = {}
        for page in self.ec2.get_paginator("describe_instances").paginate():
            for res in page["Reservations"]:
                for inst in res["Instances"]:
                    out[inst["InstanceId"]] = inst
        return out

    def user_data(self, iid: str) -> str:
        attr = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        value = attr.get("UserData", {}).get("Value", "")
        return base64.b64decode(value).decode() if value else ""


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


class Site:
    """One installation: directories, files, and the environment the plugin runs with."""

    def __init__(self, root: Path, server: Server, lsf: bool = False) -> None:
        self.root = root
        self.server = server
        self.lsf = lsf
        self.conf_dir = root / "pro" / "conf" if lsf else root / "conf"
        self.work_dir = root / "work"
        self.log_dir = root / "log"
        self.cwd = root / "elsewhere"
        for d in (self.conf_dir, self.cwd):
            d.mkdir(parents=True)
        self.config_path = self.conf_dir / "awsprov_config.json"
        self.templates_path = self.conf_dir / "awsprov_templates.json"
        self.state_path = self.work_dir / f"{PROVIDER}-state.json"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(root),
            "PYTHONPATH": str(ROOT),
            "HOSTFACTORY_AWS_PYTHON": sys.executable,
            "AWS_CONFIG_FILE": str(root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            **sandbox.FAKE_CREDENTIALS,
            **sandbox.endpoint_env(server.url),
        }
        if lsf:
            self.env.update(PROVIDER_NAME=PROVIDER, PRO_CONF_DIR=str(root / "pro"),
                            PRO_DATA_DIR=str(self.work_dir), PRO_LSF_LOGDIR=str(self.log_dir))
        else:
            self.env.update(HF_PROVIDER_NAME=PROVIDER, HF_PROVIDER_CONFDIR=str(self.conf_dir),
                            HF_PROVIDER_WORKDIR=str(self.work_dir),
                            HF_PROVIDER_LOGDIR=str(self.log_dir))
        self.image_id = server.image_id()
        self.subnets = [s["SubnetId"] for s in server.ec2.describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]][:2]
        self.write_config()
        self.write_templates([self.template("Plain")])

    def write_config(self, **overrides: Any) -> None:
        config = {"AWS_REGION": REGION, "AWS_ENDPOINT_URL": self.server.url,
                  "AWS_REQUEST_RETRY_ATTEMPTS": 0, "LogLevel": "DEBUG", **overrides}
        self.config_path.write_text(json.dumps({k: v for k, v in config.items()
                                                if v is not None}, indent=1))

    def template(self, tid: str, **fields: Any) -> dict[str, Any]:
        """A RunInstances template over moto's AMI and default subnets; fields override."""
        t = {"templateId": tid, "maxNumber": 10, "imageId": self.image_id,
             "vmType": "m5.large", "subnetId": list(self.subnets),
             "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"],
                            "nram": ["Numeric", "8192"]}, **fields}
        return {k: v for k, v in t.items() if v is not None}

    def write_templates(self, templates: Any, raw: str | None = None) -> None:
        self.templates_path.write_text(raw if raw is not None else
                                       json.dumps({"templates": templates}, indent=1))

    def cli(self, *args: str, stdin: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``python -m hostfactory_aws ARGS`` from a directory that is not the repository."""
        return subprocess.run([sys.executable, "-m", "hostfactory_aws", *args],
                              input=stdin if stdin is not None else "", capture_output=True,
                              text=True, cwd=self.cwd, env={**self.env, **(env or {})},
                              timeout=120)

    def script(self, verb: str, payload: Any) -> tuple[int, dict[str, Any]]:
        """``scripts/<verb>.sh -f FILE`` as HostFactory / LSF runs it: exit code, its JSON."""
        path = self.root / f"in-{verb}-{os.urandom(4).hex()}.json"
        path.write_text(json.dumps(payload))
        proc = subprocess.run([str(SCRIPTS / f"{verb}.sh"), "-f", str(path)],
                              capture_output=True, text=True, cwd=self.cwd, env=self.env,
                              timeout=120)
        try:
            answer = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(f"{verb}: stdout is not one JSON document: {proc.stdout!r}; "
                                 f"stderr: {proc.stderr[-2000:]}") from None
        return proc.returncode, answer

    def ok(self, verb: str, payload: Any) -> dict[str, Any]:
        code, answer = self.script(verb, payload)
        assert code == 0, f"{verb}: {answer}"
        return answer

    def log_text(self) -> str:
        return "".join(p.read_text() for p in sorted(self.log_dir.glob("*.log*")))


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]
