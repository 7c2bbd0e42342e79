"""The command itself: help and exit codes, the five verbs, ``templates`` and ``status``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.support.hostfactory import PROVIDER, ROOT, HostFactory, lines

COMMANDS = ("getAvailableTemplates", "requestMachines", "getRequestStatus",
            "requestReturnMachines", "getReturnRequests", "templates", "validate", "doctor",
            "status", "demo")


def _help(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hostfactory_aws", *args], capture_output=True,
                          text=True, cwd=str(ROOT / "docs"), timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})


def test_help_explains_every_command_in_one_line_and_the_exit_codes() -> None:
    proc = _help("--help")
    assert proc.returncode == 0
    text = proc.stdout
    for command in COMMANDS:
        m = re.search(rf"^    {command} +(\S.*)$", text, re.M)
        assert m, f"{command}: no one-line help"
        following = text[m.end():].split("\n", 2)[1]
        assert not following.startswith(" " * 10), f"{command}: help runs onto a second line"
    for code, meaning in (("0", "all well"), ("1", "a problem was found or a call failed"),
                          ("2", "usage error")):
        assert re.search(rf"^  {code}  {meaning}", text, re.M), code


@pytest.mark.parametrize("argv", [[], ["nonsense"], ["status", "--bogus"],
                                  ["validate", "extra"]])
def test_usage_errors_exit_2(argv: list[str]) -> None:
    proc = _help(*argv)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "usage: hostfactory-aws" in proc.stderr


def test_the_five_verbs_answer_as_the_scripts_do(site: HostFactory) -> None:
    """Same JSON as scripts/<verb>.sh, by -f FILE and by standard input."""
    via_script = site.ok("getAvailableTemplates", {})
    proc = site.cli("getAvailableTemplates")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == via_script

    req = {"template": {"templateId": "Plain", "machineCount": 2}}
    path = site.root / "req.json"
    path.write_text(json.dumps(req))
    proc = site.cli("requestMachines", "-f", str(path))
    assert proc.returncode == 0, proc.stdout
    rid = json.loads(proc.stdout)["requestId"]
    assert rid.startswith("req-")

    status = _cli_json(site, "getRequestStatus", {"requests": [{"requestId": rid}]})
    again = site.ok("getRequestStatus", {"requests": [{"requestId": rid}]})
    machines = status["requests"][0]["machines"]
    assert len(machines) == 2
    # The same document shape and machines as the script's (states may move between polls).
    assert status["requests"][0].keys() == again["requests"][0].keys()
    assert sorted(m["machineId"] for m in machines) == sorted(
        m["machineId"] for m in again["requests"][0]["machines"])

    held = [{"name": m["name"], "machineId": m["machineId"]} for m in machines]
    reclaim = _cli_json(site, "getReturnRequests", {"machines": held})
    assert reclaim["requests"] == []

    ret = _cli_json(site, "requestReturnMachines", {"machines": held[:1]})
    assert ret["requestId"].startswith("ret-")
    terminated = site.server.instances()[held[0]["machineId"]]["State"]["Name"]
    assert terminated in ("shutting-down", "terminated")


def _cli_json(site: HostFactory, verb: str, payload: Any) -> dict[str, Any]:
    proc = site.cli(verb, stdin=json.dumps(payload))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_a_failing_verb_still_prints_one_json_document(site: HostFactory) -> None:
    proc = site.cli("requestMachines", stdin=json.dumps(
        {"template": {"templateId": "Nope", "machineCount": 1}}))
    assert proc.returncode == 1
    answer = json.loads(proc.stdout)
    assert "unknown template 'Nope'" in answer["message"]


def test_templates_table_and_json(site: HostFactory) -> None:
    site.write_templates([site.template("Plain"),
                          site.template("Big", vmType="m5.xlarge", maxNumber=-1,
                                        attributes={"ncpus": 4})])
    proc = site.cli("templates")
    assert proc.returncode == 0, proc.stderr
    out = lines(proc.stdout)
    assert re.match(r"^TEMPLATE +MAX +AVAILABLE +API +PRICE +TYPE +NCPUS +NRAM/MEM +VMTYPES$",
                    out[0])
    assert re.split(r"\s+", out[1]) == ["Plain", "10", "10", "RunInstances", "ondemand",
                                        "X86_64", "2", "8192", "m5.large"]
    big = re.split(r"\s+", out[2])
    assert big[:3] == ["Big", "-1", "-"] and big[6] == "4" and big[-1] == "m5.xlarge"
    assert big[7] == "16384"  # filled from the instance type (moto's m5.xlarge)
    proc = site.cli("templates", "--json")
    assert proc.returncode == 0
    assert [t["templateId"] for t in json.loads(proc.stdout)["templates"]] == ["Plain", "Big"]


def test_templates_with_a_broken_template_is_one_line_on_stderr(site: HostFactory) -> None:
    site.write_templates([site.template("Plain", maxNumber="x"), site.template("Good")])
    proc = site.cli("templates")
    assert proc.returncode == 1
    assert [line.split()[0] for line in lines(proc.stdout)] == ["TEMPLATE", "Good"]
    err = lines(proc.stderr)
    assert len(err) == 1
    assert err[0].startswith("hostfactory-aws templates: ")
    assert "template 'Plain': maxNumber" in err[0]


def test_status_shows_open_requests_and_machines_by_state(site: HostFactory) -> None:
    rid = site.ok("requestMachines", {"template": {"templateId": "Plain",
                                                    "machineCount": 3}})["requestId"]
    machines = site.ok("getRequestStatus", {"requests": [{"requestId": rid}]}
                       )["requests"][0]["machines"]
    assert len(machines) == 3
    ret = site.ok("requestReturnMachines", {"machines": [
        {"name": machines[0]["name"], "machineId": machines[0]["machineId"]}]})["requestId"]
    # An instance of this provider that no request holds (launched behind the plugin's back).
    stray = site.server.ec2.run_instances(
        ImageId=site.image_id, MinCount=1, MaxCount=1, InstanceType="m5.large",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "hostfactory:provider", "Value": PROVIDER}]}])["Instances"][0]["InstanceId"]
    site.server.reset_calls()

    proc = site.cli("status")
    assert proc.returncode == 0, proc.stderr
    out = lines(proc.stdout)
    assert re.match(r"^REQUEST +TEMPLATE +KIND +STATUS +AGE +MACHINES$", out[0])
    rows = {r.split()[0]: r.split() for r in out[1:3]}
    create, give_back = rows[rid], rows[ret]
    assert create[1:3] == ["Plain", "create"]
    states = dict(s.split("=") for s in create[5:])
    assert sum(int(v) for v in states.values()) == 3
    assert int(states.get("running", 0)) == 2, states
    assert int(states.get("shutting-down", 0) or states.get("terminated", 0)) == 1, states
    assert give_back[1:3] == ["Plain", "return"]
    assert out[3].startswith(f"EC2: instances tagged hostfactory:provider={PROVIDER}: ")
    assert out[4] == f"EC2: 1 live instances are in no open request: {stray}"
    assert site.server.calls().get("DescribeInstances") == 1, "one sweep only"

    proc = site.cli("status", "--json", "--machines")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    reqs = {r["requestId"]: r for r in doc["requests"]}
    assert set(reqs[rid]["machines"]) == {m["machineId"] for m in machines}
    assert reqs[ret]["kind"] == "return" and list(reqs[ret]["machines"]) == [
        machines[0]["machineId"]]
    assert doc["liveNotHeld"] == [stray]

    proc = site.cli("status", "--machines")
    for m in machines:
        assert m["machineId"] in proc.stdout


def test_status_with_nothing_open(site: HostFactory) -> None:
    proc = site.cli("status")
    assert proc.returncode == 0
    assert lines(proc.stdout)[0] == f"no open requests in {site.state_path}"


STUCK = "req-5e1f0c2a-0b6c-4d1e-9a47-3c2b1d0e9f81"


def test_doctor_and_status_show_a_stuck_cleanup_and_why(site: HostFactory) -> None:
    data = {"version": 1, "requests": {STUCK: {
        "kind": "create", "templateId": "Plain", "units": 1, "api": "EC2Fleet",
        "createdAt": 1.0, "launch": "done", "instances": {}, "fleetIds": ["fleet-1234"],
        "launchTemplateId": "lt-0abc", "status": "complete", "endedAt": None,
        "cleanup": {"attempts": 4, "next": 9e12,
                    "error": "UnauthorizedOperation: not allowed"}}}}
    site.work_dir.mkdir(parents=True, exist_ok=True)
    site.state_path.write_text(json.dumps(data))

    proc = site.cli("status")
    assert proc.returncode == 0, proc.stderr
    assert (f"STUCK {STUCK}: cleanup failed 4 times (fleet-1234, lt-0abc): "
            "UnauthorizedOperation: not allowed; retried by the plugin") in proc.stdout
    doctor = site.cli("doctor")
    (line,) = [x for x in lines(doctor.stdout) if "state file" in x]
    assert line.startswith("FAIL") and "1 stuck" in line and "UnauthorizedOperation" in line
