"""The reclaim story end to end: the real scripts and admin command as processes, against the
sandbox server (moto on 127.0.0.1), with faults injected on the wire."""

from __future__ import annotations

import json
import re
from typing import Any

import reclaim_helpers as rh
from reclaim_fixtures import (  # noqa: F401 - fixtures, used by name
    server_fixture,
    site_fixture,
)


def launch(site: rh.Install, template: str, count: int) -> list[dict[str, str]]:
    code, answer = rh.run_script(site, "requestMachines",
                                 {"template": {"templateId": template, "machineCount": count}})
    assert code == 0, answer
    for _ in range(5):
        code, status = rh.run_script(site, "getRequestStatus",
                                     {"requests": [{"requestId": answer["requestId"]}]})
        assert code == 0, status
        req = status["requests"][0]
        if req["status"] != "running":
            break
    assert req["status"] == "complete", req
    return [{"name": m["name"], "machineId": m["machineId"]} for m in req["machines"]]


def test_spot_notice_and_outside_termination_in_one_batched_call(
        site: rh.Install, server: rh.Server) -> None:
    spot = launch(site, rh.SPOT, 2)
    ondemand = launch(site, rh.RI, 1)
    rh.link_spot_requests()
    noticed = spot[0]["machineId"]
    rh.set_spot_status(noticed, "marked-for-termination", seconds_ago=20)
    killed = ondemand[0]["machineId"]
    server.ec2.terminate_instances(InstanceIds=[killed])
    server.reset_calls()

    code, answer = rh.run_script(site, "getReturnRequests", {"machines": spot + ondemand})
    assert code == 0, answer
    got = {r["machineId"]: r for r in answer["requests"]}
    assert set(got) == {noticed, killed}
    assert 0 < got[noticed]["gracePeriod"] <= 100 and got[killed]["gracePeriod"] == 0
    assert got[killed]["machine"] == ondemand[0]["name"]
    assert all(set(r) == {"machine", "machineId", "gracePeriod"} for r in answer["requests"])
    calls = server.calls()
    assert calls.get("DescribeInstances") == 1 and calls.get("DescribeSpotInstanceRequests") == 1
    assert "TerminateInstances" not in calls  # AWS_SPOT_TERMINATE_ON_RECLAIM is false
    log = site.log_text()
    assert re.search(rf"WARNING .*reclaimed by EC2: {noticed} .*marked-for-termination", log)
    assert re.search(rf"WARNING .*reclaimed by EC2: {killed} .*instance is terminated", log)


def test_failed_or_partial_listings_report_nothing(site: rh.Install, server: rh.Server) -> None:
    spot = launch(site, rh.SPOT, 1)
    rh.link_spot_requests()
    rh.set_spot_status(spot[0]["machineId"], "marked-for-termination", seconds_ago=5)

    server.faults.add("DescribeSpotInstanceRequests", "UnauthorizedOperation", status=403)
    code, answer = rh.run_script(site, "getReturnRequests", {"machines": spot})
    assert code == 1 and set(answer) == {"message"}
    assert "UnauthorizedOperation" in answer["message"]
    assert "nothing is reported as reclaimed" in answer["message"]

    server.faults.add("DescribeInstances", "RequestLimitExceeded", times=10)
    code, answer = rh.run_script(site, "getReturnRequests", {"machines": spot})
    assert code == 1 and set(answer) == {"message"}
    assert "DescribeInstances" in answer["message"] and "RequestLimitExceeded" in answer["message"]
    server.faults.clear()

    code, answer = rh.run_script(site, "getReturnRequests", {"machines": spot})  # AWS is back
    assert code == 0 and [r["machineId"] for r in answer["requests"]] == [spot[0]["machineId"]]


def test_terminate_on_reclaim_and_orphan_timeout(site: rh.Install, server: rh.Server) -> None:
    site.write_config(AWS_SPOT_TERMINATE_ON_RECLAIM=True, AWS_ORPHAN_TIMEOUT_MINUTES=30)
    spot = launch(site, rh.SPOT, 2)
    rh.link_spot_requests()
    noticed, calm = spot[0]["machineId"], spot[1]["machineId"]
    rh.set_spot_status(noticed, "marked-for-termination", seconds_ago=5)
    orphan = rh.launch_raw(server.ec2, {rh.PROVIDER_TAG: rh.PROVIDER,
                                        rh.REQUEST_TAG: "req-long-gone"})[0]
    foreign = rh.launch_raw(server.ec2, {rh.PROVIDER_TAG: rh.OTHER_PROVIDER})[0]
    for iid in (calm, orphan, foreign):
        rh.age_instance(iid, 90)
    server.reset_calls()

    code, answer = rh.run_script(site, "getReturnRequests", {"machines": spot})
    assert code == 0, answer
    calls = server.calls()
    assert calls.get("DescribeInstances") == 1  # one sweep answers held machines and orphans
    assert calls.get("TerminateInstances") == 2  # the interrupted one, then the orphan
    assert answer["requests"] == [{"machine": spot[0]["name"], "machineId": noticed,
                                   "gracePeriod": 0}]
    assert "1 orphan instances of this provider, 1 terminated" in answer["message"]
    ec2 = server.ec2
    assert rh.state_name(ec2, noticed) in ("shutting-down", "terminated")
    assert rh.state_name(ec2, orphan) in ("shutting-down", "terminated")
    assert rh.state_name(ec2, calm) == "running" and rh.state_name(ec2, foreign) == "running"


def test_orphans_admin_command(site: rh.Install, server: rh.Server) -> None:
    held = launch(site, rh.RI, 1)
    orphan = rh.launch_raw(server.ec2, {rh.PROVIDER_TAG: rh.PROVIDER,
                                        rh.REQUEST_TAG: "req-long-gone"})[0]
    foreign = rh.launch_raw(server.ec2, {rh.PROVIDER_TAG: rh.OTHER_PROVIDER})[0]

    proc = rh.run_cli(site, "orphans", "--json")
    assert proc.returncode == 1, proc.stderr  # like a check: orphans found
    listed: dict[str, Any] = json.loads(proc.stdout)
    assert [o["instanceId"] for o in listed["orphans"]] == [orphan]

    proc = rh.run_cli(site, "orphans", "--terminate", stdin="yes\n")
    assert proc.returncode == 0, proc.stderr
    assert orphan in proc.stdout and "type 'yes'" in proc.stderr
    assert rh.state_name(server.ec2, orphan) in ("shutting-down", "terminated")
    assert rh.state_name(server.ec2, foreign) == "running"
    assert rh.state_name(server.ec2, held[0]["machineId"]) == "running"
    assert re.search(rf"WARNING .*orphans command: terminating 1 orphans: \['{orphan}'\]",
                     site.log_text())

    proc = rh.run_cli(site, "orphans")
    assert proc.returncode == 0 and proc.stdout.strip() == "no orphan instances"
