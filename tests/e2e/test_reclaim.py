"""The reclaim story end to end: the real scripts and admin command as processes, against the
sandbox server (moto on 127.0.0.1), with faults injected on the wire."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support import ec2_events as events
from tests.support.hostfactory import (
    FLEET_SPOT,
    OTHER_PROVIDER,
    PROVIDER,
    PROVIDER_TAG,
    REQUEST_TAG,
    RI,
    HostFactory,
    SandboxServer,
)


def test_spot_notice_and_outside_termination_in_one_batched_call(
        hf: HostFactory, moto_server: SandboxServer) -> None:
    spot = hf.held(FLEET_SPOT, 2)
    ondemand = hf.held(RI, 1)
    events.link_spot_requests()
    noticed = spot[0]["machineId"]
    events.set_spot_status(noticed, "marked-for-termination", seconds_ago=20)
    killed = ondemand[0]["machineId"]
    moto_server.ec2.terminate_instances(InstanceIds=[killed])
    moto_server.reset_calls()

    code, answer = hf.call("getReturnRequests", {"machines": spot + ondemand})
    assert code == 0, answer
    got = {r["machineId"]: r for r in answer["requests"]}
    assert set(got) == {noticed, killed}
    assert 0 < got[noticed]["gracePeriod"] <= 100 and got[killed]["gracePeriod"] == 0
    assert got[killed]["machine"] == ondemand[0]["name"]
    assert all(set(r) == {"machine", "machineId", "gracePeriod"} for r in answer["requests"])
    calls = moto_server.calls()
    assert calls.get("DescribeInstances") == 1 and calls.get("DescribeSpotInstanceRequests") == 1
    assert "TerminateInstances" not in calls  # AWS_SPOT_TERMINATE_ON_RECLAIM is false
    log = hf.log_text()
    assert re.search(rf"WARNING .*reclaimed by EC2: {noticed} .*marked-for-termination", log)
    assert re.search(rf"WARNING .*reclaimed by EC2: {killed} .*instance is terminated", log)


def test_failed_or_partial_listings_report_nothing(hf: HostFactory,
                                                   moto_server: SandboxServer) -> None:
    spot = hf.held(FLEET_SPOT, 1)
    events.link_spot_requests()
    events.set_spot_status(spot[0]["machineId"], "marked-for-termination", seconds_ago=5)

    moto_server.faults.add("DescribeSpotInstanceRequests", "UnauthorizedOperation", status=403)
    code, answer = hf.call("getReturnRequests", {"machines": spot})
    assert code == 1 and set(answer) == {"message"}
    assert "UnauthorizedOperation" in answer["message"]
    assert "nothing is reported as reclaimed" in answer["message"]

    moto_server.faults.add("DescribeInstances", "RequestLimitExceeded", times=10)
    code, answer = hf.call("getReturnRequests", {"machines": spot})
    assert code == 1 and set(answer) == {"message"}
    assert "DescribeInstances" in answer["message"] and "RequestLimitExceeded" in answer["message"]
    moto_server.faults.clear()

    code, answer = hf.call("getReturnRequests", {"machines": spot})  # AWS is back
    assert code == 0 and [r["machineId"] for r in answer["requests"]] == [spot[0]["machineId"]]


def test_terminate_on_reclaim_and_orphan_timeout(hf: HostFactory,
                                                 moto_server: SandboxServer) -> None:
    hf.write_config(AWS_SPOT_TERMINATE_ON_RECLAIM=True, AWS_ORPHAN_TIMEOUT_MINUTES=30)
    spot = hf.held(FLEET_SPOT, 2)
    events.link_spot_requests()
    noticed, calm = spot[0]["machineId"], spot[1]["machineId"]
    events.set_spot_status(noticed, "marked-for-termination", seconds_ago=5)
    orphan = events.launch_raw(moto_server.ec2, {PROVIDER_TAG: PROVIDER,
                                                 REQUEST_TAG: "req-long-gone"},
                               token="req-long-gone-0")[0]
    foreign = events.launch_raw(moto_server.ec2, {PROVIDER_TAG: OTHER_PROVIDER})[0]
    for iid in (calm, orphan, foreign):
        events.age_instance(iid, 90)
    moto_server.reset_calls()

    code, answer = hf.call("getReturnRequests", {"machines": spot})
    assert code == 0, answer
    calls = moto_server.calls()
    assert calls.get("DescribeInstances") == 1  # one sweep answers held machines and orphans
    assert calls.get("TerminateInstances") == 2  # the interrupted one, then the orphan
    assert answer["requests"] == [{"machine": spot[0]["name"], "machineId": noticed,
                                   "gracePeriod": 0}]
    assert "1 orphan instances of this provider, 1 terminated" in answer["message"]
    ec2 = moto_server.ec2
    assert events.state_name(ec2, noticed) in ("shutting-down", "terminated")
    assert events.state_name(ec2, orphan) in ("shutting-down", "terminated")
    assert events.state_name(ec2, calm) == "running"
    assert events.state_name(ec2, foreign) == "running"


def test_orphans_admin_command(hf: HostFactory, moto_server: SandboxServer) -> None:
    held = hf.held(RI, 1)
    orphan = events.launch_raw(moto_server.ec2, {PROVIDER_TAG: PROVIDER,
                                                 REQUEST_TAG: "req-long-gone"},
                               token="req-long-gone-0")[0]
    foreign = events.launch_raw(moto_server.ec2, {PROVIDER_TAG: OTHER_PROVIDER})[0]

    proc = hf.cli("orphans", "--json")
    assert proc.returncode == 1, proc.stderr  # like a check: orphans found
    listed: dict[str, Any] = json.loads(proc.stdout)
    assert [o["instanceId"] for o in listed["orphans"]] == [orphan]

    proc = hf.cli("orphans", "--terminate", stdin="yes\n")
    assert proc.returncode == 0, proc.stderr
    assert orphan in proc.stdout and "type 'yes'" in proc.stderr
    assert events.state_name(moto_server.ec2, orphan) in ("shutting-down", "terminated")
    assert events.state_name(moto_server.ec2, foreign) == "running"
    assert events.state_name(moto_server.ec2, held[0]["machineId"]) == "running"
    assert re.search(rf"WARNING .*orphans command: terminating 1 orphans: \['{orphan}'\]",
                     hf.log_text())

    proc = hf.cli("orphans")
    assert proc.returncode == 0 and proc.stdout.strip() == "no orphan instances"


def _foreign_fleet_host(ec2: Any, token: str) -> str:
    """A host of someone else's EC2 Fleet (made with their own ClientToken)."""
    lt = ec2.create_launch_template(
        LaunchTemplateName=f"someone-else-{token}",
        LaunchTemplateData={"ImageId": events.image_id(ec2), "InstanceType": "t3.micro"},
    )["LaunchTemplate"]["LaunchTemplateId"]
    fleet = ec2.create_fleet(
        Type="instant", ClientToken=token,
        LaunchTemplateConfigs=[{"LaunchTemplateSpecification": {"LaunchTemplateId": lt,
                                                                "Version": "1"},
                                "Overrides": [{"InstanceType": "t3.micro"}]}],
        TargetCapacitySpecification={"TotalTargetCapacity": 1,
                                     "DefaultTargetCapacityType": "on-demand"})
    return fleet["Instances"][0]["InstanceIds"][0]


def test_a_forged_provider_tag_never_gets_a_host_terminated(
        hf: HostFactory, moto_server: SandboxServer) -> None:
    """Anyone allowed to tag can write the provider tag on any instance: the orphan sweep and
    the orphans command end only hosts whose launch EC2 itself ties to a request of this
    provider (its ClientToken, group or fleet); the others stay, listed as candidates."""
    hf.write_config(AWS_ORPHAN_TIMEOUT_MINUTES=30)
    ec2 = moto_server.ec2
    held = hf.held(RI, 1)
    held_rid = next(iter(hf.state()["requests"]))
    # someone else's hosts, tagged afterwards as ours: with no record, and into a held request
    lone, joiner = events.launch_raw(ec2, None, count=2)
    fleet_host = _foreign_fleet_host(ec2, "their-own-token")
    ec2.create_tags(Resources=[lone, fleet_host], Tags=[
        {"Key": PROVIDER_TAG, "Value": PROVIDER}, {"Key": REQUEST_TAG, "Value": "req-forged"}])
    ec2.create_tags(Resources=[joiner], Tags=[
        {"Key": PROVIDER_TAG, "Value": PROVIDER}, {"Key": REQUEST_TAG, "Value": held_rid}])
    # ours, launched by a call whose state was then lost: its ClientToken says so
    lost = events.launch_raw(ec2, {PROVIDER_TAG: PROVIDER, REQUEST_TAG: "req-lost"},
                             token="req-lost-0")[0]
    for iid in (lone, joiner, fleet_host, lost):
        events.age_instance(iid, 90)

    code, answer = hf.call("getReturnRequests", {"machines": held})
    assert code == 0, answer
    assert "4 orphan instances of this provider, 1 terminated" in answer["message"]
    assert events.state_name(ec2, lost) in ("shutting-down", "terminated")
    for iid in (lone, joiner, fleet_host, held[0]["machineId"]):
        assert events.state_name(ec2, iid) == "running", iid
    log = hf.log_text()
    assert re.search(rf"WARNING .*{lone} .*candidate: .*only its tags say it is ours", log)
    assert re.search(rf"WARNING .*{joiner} .*candidate: .*only its tags say it is ours", log)
    assert re.search(rf"orphan {fleet_host}: kept: its fleet fleet-\S+ was not created for "
                     r"request req-forged \(ClientToken their-own-token\)", log)

    proc = hf.cli("orphans", "--json")  # the admin sees all three, and what holds them back
    listed = {o["instanceId"]: o for o in json.loads(proc.stdout)["orphans"]}
    assert set(listed) == {lone, joiner, fleet_host}
    assert not listed[lone]["canTerminate"] and not listed[joiner]["canTerminate"]
    proc = hf.cli("orphans", "--terminate", "--yes")
    assert proc.returncode == 1, proc.stderr
    assert "kept: its fleet" in proc.stderr
    for iid in (lone, joiner, fleet_host):
        assert events.state_name(ec2, iid) == "running", iid
