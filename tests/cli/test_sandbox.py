"""``hostfactory-aws sandbox`` and ``demo``: the plugin by hand with no AWS account.

The sandbox is started in the background as an admin would, its env.sh is sourced (parsed
here), and the five scripts and the admin commands are run by name from PATH, each as its own
process, exactly as the README's by-hand session shows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.hostfactory import ROOT

BASE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT),
            "HOSTFACTORY_AWS_PYTHON": sys.executable, "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


def sourced(env_sh: str, env: dict[str, str]) -> dict[str, str]:
    """What ``source env.sh`` does to the environment (its lines are plain exports)."""
    out = dict(env)
    for line in env_sh.splitlines():
        m = re.match(r'^export (\w+)="?(.*?)"?$', line)
        if m:
            out[m.group(1)] = m.group(2).replace("$PATH", env["PATH"])
    return out


def sh(env: dict[str, str], cwd: Path, *argv: str,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


def admin(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return sh(env, cwd, sys.executable, "-m", "hostfactory_aws", *args)


def test_sandbox_drives_the_five_scripts_and_the_admin_commands_by_hand(
        tmp_path: Path) -> None:
    base = tmp_path / "sandbox"
    started = admin(BASE_ENV, tmp_path, "sandbox", "--dir", str(base), "--background")
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout == (base / "env.sh").read_text()
        env = sourced(started.stdout, BASE_ENV)
        assert env["HF_PROVIDER_CONFDIR"] == str(base / "conf")
        config = json.loads((base / "conf" / "awsprov_config.json").read_text())
        assert config["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")  # loopback only
        env.pop("AWS_ACCESS_KEY_ID", None)  # the sandbox's own credentials file is enough

        def script(verb: str, payload: dict[str, Any]) -> dict[str, Any]:
            path = tmp_path / f"{verb}.json"
            path.write_text(json.dumps(payload))
            proc = sh(env, tmp_path, f"{verb}.sh", "-f", str(path))  # found on PATH
            assert proc.returncode == 0, proc.stdout + proc.stderr
            return json.loads(proc.stdout)

        ids = [t["templateId"] for t in script("getAvailableTemplates", {})["templates"]]
        assert ids == ["OnDemand-M5", "Spot-Fleet", "SpotFleet-Request"]
        req = script("requestMachines", {"template": {"templateId": "OnDemand-M5",
                                                      "machineCount": 3}})
        status = script("getRequestStatus", {"requests": [{"requestId": req["requestId"]}]})
        machines = status["requests"][0]["machines"]
        assert len(machines) == 3  # the faithful sandbox launches what was asked
        hosts = [{"name": m["name"], "machineId": m["machineId"]} for m in machines]
        assert script("getReturnRequests", {"machines": hosts})["requests"] == []
        ret = script("requestReturnMachines", {"machines": hosts[:1]})
        done = script("getRequestStatus", {"requests": [{"requestId": ret["requestId"]}]})
        assert done["requests"][0]["machines"][0]["machineId"] == hosts[0]["machineId"]

        doctor = admin(env, tmp_path, "doctor")
        assert doctor.returncode == 0, doctor.stdout
        status_cmd = admin(env, tmp_path, "status", "--json")
        assert [r["requestId"] for r in json.loads(status_cmd.stdout)["requests"]
                if r["kind"] == "create"] == [req["requestId"]]
        validate = admin(env, tmp_path, "validate", "--aws")
        assert validate.returncode == 0, validate.stdout + validate.stderr
        orphans = admin(env, tmp_path, "orphans")
        assert orphans.returncode == 0 and "no orphan instances" in orphans.stdout
        policy = admin(env, tmp_path, "iam-policy")
        assert "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role" in policy.stdout
        again = admin(BASE_ENV, tmp_path, "sandbox", "--dir", str(base), "--background")
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        stopped = admin(BASE_ENV, tmp_path, "sandbox", "--dir", str(base), "--stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not (base / "sandbox.pid").exists() and not (base / "env.sh").exists()
    assert admin(BASE_ENV, tmp_path, "sandbox", "--dir", str(base), "--stop").returncode == 1


def test_demo_runs_the_real_scripts(tmp_path: Path) -> None:
    # a dozen script processes: generous on a loaded machine
    proc = sh({**BASE_ENV, "HOME": str(tmp_path)}, tmp_path, sys.executable, "-m",
              "hostfactory_aws", "demo", "--count", "1", timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for verb in ("getAvailableTemplates", "requestMachines", "getRequestStatus",
                 "getReturnRequests", "requestReturnMachines"):
        assert f"$ {verb}.sh -f input-" in proc.stdout, verb
    assert "each script ran as its own process" in proc.stderr
    assert not os.listdir(tmp_path) or "hostfactory-aws-demo" not in "".join(
        os.listdir(tmp_path))
