"""HostFactory's side of every test: an installation in tmp_path, and the calls it makes.

One class for every suite: the conf/work/log dirs (Symphony's HF_PROVIDER_* variables, or
LSF's PRO_* ones), the config and templates over moto's own AMI and default subnets, and
the five verbs called as HostFactory calls them: ``scripts/<verb>.sh`` as a process from a
directory that is not the repository (e2e, cli), or invoke_provider.run in this process
(over mock_aws, tests/aws). The admin command runs as ``python -m hostfactory_aws``.
"""

from __future__ import annotations

import io
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

from hostfactory_aws.admin import sandbox
from tests.support.server import (
    ACCOUNT,
    REGION,
    ROOT,
    SandboxServer,
    default_subnets,
    find_image,
    tags_of,
)

__all__ = ["ACCOUNT", "REGION", "ROOT", "SandboxServer", "tags_of"]

SCRIPTS = ROOT / "scripts"
PROVIDER = "awsinst"
OTHER_PROVIDER = "awsother"
PROVIDER_TAG = "hostfactory:provider"
REQUEST_TAG = "hostfactory:requestId"
TEMPLATE_TAG = "hostfactory:templateId"
RETURN_TAG = "hostfactory:returnId"
INSTANCE_TAGS = {"Project": "e2e", "CostCenter": "grid"}
RI, FLEET_OD, FLEET_SPOT = "OnDemand-RI", "Fleet-OnDemand", "Fleet-Spot"
WEIGHTS = {"m5.large": 1, "m5.xlarge": 2}
ATTRIBUTES = {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"],
              "nram": ["Numeric", "8192"]}
# AWS calls that change something: a rejected input must cause none of them.
CHANGING_ACTIONS = ("RunInstances", "CreateFleet", "CreateLaunchTemplate", "TerminateInstances",
                    "CreateTags", "DeleteFleets")
# The one line invoke_provider logs per call: "<verb> <ids> -> ok|FAILED in ..."
LOG_CALL = re.compile(r" hostfactory_aws: (\w+) .*?-> (ok|FAILED) in \d")

# Many calls of one verb in ONE interpreter (bulk set-up; what is measured runs as a script).
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


def environment(root: Path, provider: str = PROVIDER, conf_dir: Path | None = None,
                lsf: bool = False, endpoint: str | None = None) -> dict[str, str]:
    """The environment HostFactory (or LSF with ``lsf``) gives the scripts, over ``root``:
    fake credentials, no AWS config of this machine, no metadata service; with ``endpoint``
    every non-EC2 service the plugin uses (STS, IAM...) goes to that sandbox too."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(root),
        "HOSTFACTORY_AWS_PYTHON": sys.executable,
        "AWS_CONFIG_FILE": str(root / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        **sandbox.FAKE_CREDENTIALS,
        **(sandbox.endpoint_env(endpoint) if endpoint else {}),
    }
    if lsf:
        env.update(PROVIDER_NAME=provider, PRO_CONF_DIR=str(root / "pro"),
                   PRO_DATA_DIR=str(root / "work"), PRO_LSF_LOGDIR=str(root / "log"))
    else:
        env.update(HF_PROVIDER_NAME=provider, HF_PROVIDER_CONFDIR=str(conf_dir or root / "conf"),
                   HF_PROVIDER_WORKDIR=str(root / "work"), HF_PROVIDER_LOGDIR=str(root / "log"))
    return env


class HostFactory:
    """A HostFactory installation in ``root`` that calls the plugin like HostFactory does.

    ``server``: the sandbox server its config points at; without one, ``ec2`` (a client of
    in-process moto) supplies the AMI and subnets and the config names no endpoint.
    ``lsf``: LSF resource connector's layout ($PRO_CONF_DIR/conf and PRO_* variables).
    ``config``: config keys of this installation that ``write_config`` keeps.
    """

    def __init__(self, root: Path, server: SandboxServer | None = None, *, ec2: Any = None,
                 lsf: bool = False, provider: str = PROVIDER,
                 config: dict[str, Any] | None = None,
                 templates: list[dict[str, Any]] | None = None) -> None:
        self.root = root
        self.server = server
        self.lsf = lsf
        self.provider = provider
        self.conf_dir = root / "pro" / "conf" if lsf else root / "conf"
        self.work_dir = root / "work"
        self.log_dir = root / "log"
        self.cwd = root / "elsewhere"
        self.inputs = root / "inputs"
        for d in (self.conf_dir, self.cwd, self.inputs):
            d.mkdir(parents=True)
        self.config_path = self.conf_dir / "awsprov_config.json"
        self.templates_path = self.conf_dir / "awsprov_templates.json"
        self.state_path = self.work_dir / f"{provider}-state.json"
        self.made: Counter[tuple[str, bool]] = Counter()  # (verb, exit 0) of every call
        self._made_lock = threading.Lock()
        self.env = environment(root, provider, self.conf_dir, lsf,
                               endpoint=server.url if server is not None else None)
        self.base_config = {"AWS_REGION": REGION, "AWS_REQUEST_RETRY_ATTEMPTS": 1,
                            "LogLevel": "DEBUG", **(config or {})}
        if server is not None:
            self.base_config["AWS_ENDPOINT_URL"] = server.url
            ec2 = server.ec2
            self.image_id = server.image_id()
        else:
            self.image_id = find_image(ec2)[0]
        self.subnets = default_subnets(ec2)
        self.write_config()
        self.write_templates(self.default_templates() if templates is None else templates)

    # -- files ------------------------------------------------------------------------------

    def write_config(self, **overrides: Any) -> dict[str, Any]:
        """awsprov_config.json pointing at the sandbox; overrides replace keys (None drops)."""
        config = {**self.base_config, **overrides}
        self.config_path.write_text(json.dumps({k: v for k, v in config.items()
                                                if v is not None}, indent=1))
        return config

    def template(self, tid: str, **fields: Any) -> dict[str, Any]:
        """A RunInstances template over the sandbox's AMI and subnets; fields override."""
        t = {"templateId": tid, "maxNumber": 10, "imageId": self.image_id,
             "vmType": "m5.large", "subnetId": list(self.subnets),
             "attributes": dict(ATTRIBUTES), **fields}
        return {k: v for k, v in t.items() if v is not None}

    def default_templates(self) -> list[dict[str, Any]]:
        tag_string = ";".join(f"{k}={v}" for k, v in INSTANCE_TAGS.items())
        return [
            self.template(RI, providerApi="RunInstances", instanceTags=tag_string),
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
             "attributes": dict(ATTRIBUTES), "instanceTags": tag_string},
        ]

    def write_templates(self, templates: Any, raw: str | None = None) -> None:
        self.templates_path.write_text(raw if raw is not None else
                                       json.dumps({"templates": templates}, indent=1))

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

    def run(self, verb: str, payload: Any = None, raw: str | None = None, stdin: bool = False,
            extra_env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
        """Run ``scripts/<verb>.sh`` once: (exit code, the one JSON document, stderr)."""
        argv, text = self.command(verb, payload, raw, stdin)
        feed: dict[str, Any] = {"input": text} if text is not None else {
            "stdin": subprocess.DEVNULL}
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=self.cwd,
                              env={**self.env, **(extra_env or {})}, timeout=600, **feed)
        code, answer = check_output(verb, proc.returncode, proc.stdout, proc.stderr)
        with self._made_lock:
            self.made[(verb, code == 0)] += 1
        return code, answer, proc.stderr

    def call(self, verb: str, payload: Any = None, raw: str | None = None,
             stdin: bool = False) -> tuple[int, dict[str, Any]]:
        """Run ``scripts/<verb>.sh`` once: (exit code, the one JSON document it printed)."""
        code, answer, _ = self.run(verb, payload, raw, stdin)
        return code, answer

    def call_in_one_process(self, verb: str,
                            payloads: list[Any]) -> list[tuple[int, dict[str, Any]]]:
        """Many calls through invoke_provider.run in ONE interpreter: for bulk test setup.

        Same code, same environment and files as the scripts; only the process start and
        the boto3 import are paid once instead of per call.
        """
        proc = subprocess.run([sys.executable, "-c", BULK_DRIVER, str(ROOT), verb],
                              input=json.dumps(payloads), capture_output=True, text=True,
                              cwd=self.cwd, env=self.env, timeout=600)
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

    def invoke(self, verb: str, payload: Any) -> tuple[int, dict[str, Any]]:
        """One verb in this process (over mock_aws), as invoke_provider runs it."""
        from hostfactory_aws.invoke_provider import run

        return run([verb], io.StringIO(json.dumps(payload)), self.env)

    def cli(self, *args: str, stdin: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``python -m hostfactory_aws ARGS`` as an admin runs it, not from the repository."""
        return subprocess.run([sys.executable, "-m", "hostfactory_aws", *args],
                              input=stdin if stdin is not None else "", capture_output=True,
                              text=True, cwd=self.cwd,
                              env={**self.env, "PYTHONPATH": str(ROOT), **(env or {})},
                              timeout=120)

    # -- counting (never timing) ------------------------------------------------------------

    def counted(self, verb: str, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        """Run one verb; return its answer and the AWS calls it made, by action."""
        assert self.server is not None, "counting needs the sandbox server"
        self.server.reset_calls()
        answer = self.ok(verb, data)
        return answer, self.server.calls()

    def imports(self, verb: str, data: dict[str, Any]) -> set[str]:
        """Top-level packages the verb's process imported (python -X importtime)."""
        code, answer, err = self.run(verb, data, extra_env={"PYTHONPROFILEIMPORTTIME": "1"})
        assert code == 0, (verb, answer, err[-2000:])
        found = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+([\w.]+)", err, re.M)
        return {name.split(".")[0] for name in found}

    def request_many(self, template_id: str, count: int, machines: int) -> list[str]:
        """``count`` requestMachines in one set-up process; returns the request ids."""
        payload = {"template": {"templateId": template_id, "machineCount": machines}}
        out = self.call_in_one_process("requestMachines", [payload] * count)
        assert all(code == 0 for code, _ in out), out
        return [answer["requestId"] for _, answer in out]

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

    def held(self, template_id: str, count: int,
             in_process: bool = False) -> list[dict[str, str]]:
        """requestMachines, then getRequestStatus until complete: the hosts HostFactory
        holds. ``in_process``: the verbs run in this process (over mock_aws)."""
        call = self.invoke if in_process else self.call
        code, answer = call("requestMachines",
                            {"template": {"templateId": template_id, "machineCount": count}})
        assert code == 0, answer
        for _ in range(5):
            code, status = call("getRequestStatus",
                                {"requests": [{"requestId": answer["requestId"]}]})
            assert code == 0, status
            req = status["requests"][0]
            if req["status"] != "running":
                break
        assert req["status"] == "complete", req
        machines = [{"name": m["name"], "machineId": m["machineId"]} for m in req["machines"]]
        assert len(machines) == count
        return machines

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


def lines(text: str) -> list[str]:
    """The non-blank lines of a command's output."""
    return [line for line in text.splitlines() if line.strip()]
