"""getReturnRequests and the orphans command against in-process moto (mock_aws).

EC2's part (interruption notices, reclaims, console stops) is played on moto's backend;
the plugin's part goes through invoke_provider.run exactly as the scripts call it.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest

from hostfactory_aws.admin import cli
from tests.support import ec2_events as events
from tests.support.faults import fail_on
from tests.support.hostfactory import (
    FLEET_SPOT,
    OTHER_PROVIDER,
    PROVIDER,
    PROVIDER_TAG,
    REQUEST_TAG,
    RI,
    HostFactory,
)


def reclaims(install: HostFactory, machines: list[dict[str, str]] | None) -> dict[str, Any]:
    code, answer = install.invoke("getReturnRequests",
                                  {} if machines is None else {"machines": machines})
    assert code == 0, answer
    assert set(answer) == {"message", "requests"}
    for r in answer["requests"]:
        assert set(r) == {"machine", "machineId", "gracePeriod"}
        assert isinstance(r["gracePeriod"], int) and r["gracePeriod"] >= 0
    return answer


def by_id(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["machineId"]: r for r in answer["requests"]}


# -- instances taken outside HostFactory ------------------------------------------------------

def test_terminated_and_stopped_outside_hostfactory_are_reported_with_reason(
        inst: HostFactory, aws: Any) -> None:
    held = inst.held(RI, 3, in_process=True)
    gone, stopped, fine = (m["machineId"] for m in held)
    aws.terminate_instances(InstanceIds=[gone])
    aws.stop_instances(InstanceIds=[stopped])

    for given in (held, None):  # HostFactory's list, and {} (the state's live machines)
        got = by_id(reclaims(inst, given))
        assert set(got) == {gone, stopped}
        assert all(r["gracePeriod"] == 0 for r in got.values())
        names = {m["machineId"]: m["name"] for m in held}
        assert got[gone]["machine"] == names[gone] and got[stopped]["machine"] == names[stopped]
    log = inst.log_text()
    assert re.search(rf"reclaimed by EC2: {gone} .*instance is terminated \(.*User", log)
    assert re.search(rf"reclaimed by EC2: {stopped} .*instance is stopped \(.*User", log)
    assert fine not in re.findall(r"reclaimed by EC2: (i-\w+)", log)


def test_machines_hostfactory_returned_itself_are_not_reclaims(inst: HostFactory) -> None:
    held = inst.held(RI, 2, in_process=True)
    code, answer = inst.invoke("requestReturnMachines", {"machines": held[:1]})
    assert code == 0, answer
    assert reclaims(inst, held)["requests"] == []


def test_nothing_reclaimed_gives_an_empty_list(inst: HostFactory) -> None:
    held = inst.held(RI, 2, in_process=True)
    answer = reclaims(inst, held)
    assert answer["requests"] == [] and "0 of 2" in answer["message"]


# -- Spot interruptions -----------------------------------------------------------------------

def test_spot_interruption_notice_is_reported_with_the_time_left(
        inst: HostFactory, aws: Any) -> None:
    held = inst.held(FLEET_SPOT, 2, in_process=True)
    events.link_spot_requests()
    noticed, calm = held[0]["machineId"], held[1]["machineId"]
    events.set_spot_status(noticed, "marked-for-termination", seconds_ago=20)

    got = by_id(reclaims(inst, held))
    assert set(got) == {noticed}
    assert 0 < got[noticed]["gracePeriod"] <= 100  # 120 s notice given 20 s ago
    assert got[noticed]["machine"] == held[0]["name"]
    assert events.state_name(aws, noticed) == "running"  # AWS_SPOT_TERMINATE_ON_RECLAIM false
    assert re.search(rf"reclaimed by EC2: {noticed} .*Spot marked-for-termination",
                     inst.log_text())
    assert calm not in re.findall(r"reclaimed by EC2: (i-\w+)", inst.log_text())


def test_a_grid_past_one_filter_of_spot_ids_asks_by_status_with_the_same_answer(
        inst: HostFactory, aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """More Spot requests than one id filter takes: the taken-back ones of the region,
    found by EC2's status-code filter (the sandbox's, as EC2's, takes wildcards)."""
    from hostfactory_aws.cloud import spot_notices

    held = inst.held(FLEET_SPOT, 3, in_process=True)
    events.link_spot_requests()
    monkeypatch.setattr(spot_notices, "FILTER_VALUES", 2)
    noticed, taken, calm = (m["machineId"] for m in held)
    events.set_spot_status(noticed, "marked-for-termination", seconds_ago=20)
    events.set_spot_status(taken, "instance-terminated-no-capacity-in-a-future-zone")

    got = by_id(reclaims(inst, held))
    assert set(got) == {noticed, taken}
    assert 0 < got[noticed]["gracePeriod"] <= 100 and got[taken]["gracePeriod"] == 0


def test_an_old_notice_has_no_time_left(inst: HostFactory) -> None:
    held = inst.held(FLEET_SPOT, 1, in_process=True)
    events.link_spot_requests()
    events.set_spot_status(held[0]["machineId"], "marked-for-stop", seconds_ago=600)
    (r,) = reclaims(inst, held)["requests"]
    assert r["machineId"] == held[0]["machineId"] and r["gracePeriod"] == 0


def test_spot_instance_already_reclaimed_is_reported_with_zero_and_its_reason(
        inst: HostFactory) -> None:
    held = inst.held(FLEET_SPOT, 2, in_process=True)
    events.link_spot_requests()
    iid = held[1]["machineId"]
    events.set_spot_status(iid, "instance-terminated-no-capacity", seconds_ago=5)
    events.set_instance_state(iid, "terminated", "Server.SpotInstanceTermination",
                          "Server.SpotInstanceTermination: Spot instance termination")
    (r,) = reclaims(inst, held)["requests"]
    assert r["machineId"] == iid and r["gracePeriod"] == 0
    line = next(x for x in inst.log_text().splitlines() if f"reclaimed by EC2: {iid}" in x)
    assert "instance-terminated-no-capacity" in line and "Server.SpotInstanceTermination" in line


def test_terminate_on_reclaim_ends_interrupted_spot_instances_at_once(
        inst: HostFactory, aws: Any) -> None:
    inst.write_config(AWS_SPOT_TERMINATE_ON_RECLAIM=True)
    held = inst.held(FLEET_SPOT, 2, in_process=True)
    events.link_spot_requests()
    noticed, calm = held[0]["machineId"], held[1]["machineId"]
    events.set_spot_status(noticed, "marked-for-termination", seconds_ago=10)

    got = by_id(reclaims(inst, held))
    assert set(got) == {noticed} and got[noticed]["gracePeriod"] == 0
    assert events.state_name(aws, noticed) in ("shutting-down", "terminated")
    assert events.state_name(aws, calm) == "running"
    # Next call: now terminated and not returned by HostFactory, so still reported.
    assert set(by_id(reclaims(inst, held))) == {noticed}


def test_terminate_on_reclaim_never_touches_another_providers_instance(
        inst: HostFactory, aws: Any) -> None:
    inst.write_config(AWS_SPOT_TERMINATE_ON_RECLAIM=True)
    held = inst.held(FLEET_SPOT, 1, in_process=True)
    events.link_spot_requests()
    iid = held[0]["machineId"]
    aws.create_tags(Resources=[iid], Tags=[{"Key": PROVIDER_TAG, "Value": OTHER_PROVIDER}])
    events.set_spot_status(iid, "marked-for-termination", seconds_ago=10)

    got = by_id(reclaims(inst, held))
    assert set(got) == {iid}  # HostFactory holds it, so it is told
    assert events.state_name(aws, iid) == "running"  # but it is not ours to terminate


# -- failed and partial listings ---------------------------------------------------------------

def test_spot_listing_failure_reports_nothing_not_half(
        inst: HostFactory, aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    held = inst.held(FLEET_SPOT, 2, in_process=True)
    events.link_spot_requests()
    events.set_spot_status(held[0]["machineId"], "marked-for-termination", seconds_ago=10)
    aws.terminate_instances(InstanceIds=[held[1]["machineId"]])  # would be a reclaim too
    fail_on(monkeypatch, "DescribeSpotInstanceRequests")

    code, answer = inst.invoke("getReturnRequests", {"machines": held})
    assert code == 1 and set(answer) == {"message"}
    msg = answer["message"]
    assert "DescribeSpotInstanceRequests" in msg and "UnauthorizedOperation" in msg
    assert "nothing is reported as reclaimed" in msg and "Spot requests" in msg


@pytest.mark.parametrize("kind", ["fatal", "throttle"])
def test_instance_listing_failure_fails_the_call(
        inst: HostFactory, aws: Any, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    held = inst.held(RI, 1, in_process=True)
    aws.terminate_instances(InstanceIds=[held[0]["machineId"]])
    fail_on(monkeypatch, "DescribeInstances", "RequestLimitExceeded" if kind == "throttle"
            else "AuthFailure", kind)
    code, answer = inst.invoke("getReturnRequests", {"machines": held})
    assert code == 1 and set(answer) == {"message"}
    assert "DescribeInstances" in answer["message"]
    assert "nothing is reported as reclaimed" in answer["message"]


# -- orphans during getReturnRequests ---------------------------------------------------------

def _orphan_world(inst: HostFactory, aws: Any) -> dict[str, Any]:
    """HostFactory holds 2 machines; around them: an old and a young orphan of ours, and an
    old instance of another provider and an old untagged one. Everyone is old but the
    young orphan, so only ownership can save them."""
    held = inst.held(RI, 2, in_process=True)
    old, young = events.launch_raw(aws, {PROVIDER_TAG: PROVIDER,
                                         REQUEST_TAG: "req-from-a-lost-state"}, count=2,
                                   token="req-from-a-lost-state-0")
    foreign = events.launch_raw(aws, {PROVIDER_TAG: OTHER_PROVIDER})[0]
    untagged = events.launch_raw(aws, None)[0]
    for iid in [m["machineId"] for m in held] + [old, foreign, untagged]:
        events.age_instance(iid, 120)
    events.age_instance(young, 5)
    return {"held": held, "old": old, "young": young, "foreign": foreign,
            "untagged": untagged}


def _states(aws: Any, world: dict[str, Any]) -> dict[str, str]:
    ids = [m["machineId"] for m in world["held"]] + [world[k] for k in
                                                      ("old", "young", "foreign", "untagged")]
    return {iid: events.state_name(aws, iid) for iid in ids}


def test_orphans_are_logged_and_never_terminated_by_default(inst: HostFactory, aws: Any) -> None:
    w = _orphan_world(inst, aws)
    answer = reclaims(inst, w["held"])
    assert answer["requests"] == []
    assert "2 orphan instances" in answer["message"]
    warning = next(x for x in inst.log_text().splitlines() if "orphan instances" in x)
    assert "WARNING" in warning and w["old"] in warning and w["young"] in warning
    assert w["foreign"] not in warning and w["untagged"] not in warning
    assert set(_states(aws, w).values()) == {"running"}


def test_orphans_past_the_timeout_are_terminated_when_hostfactory_gave_its_list(
        inst: HostFactory, aws: Any) -> None:
    inst.write_config(AWS_ORPHAN_TIMEOUT_MINUTES=30)
    w = _orphan_world(inst, aws)
    answer = reclaims(inst, w["held"])
    assert answer["requests"] == [] and "1 terminated" in answer["message"]
    states = _states(aws, w)
    assert states.pop(w["old"]) in ("shutting-down", "terminated")
    assert set(states.values()) == {"running"}  # young orphan, held, foreign, untagged


def test_orphans_are_not_terminated_when_hostfactory_sent_no_list(
        inst: HostFactory, aws: Any) -> None:
    inst.write_config(AWS_ORPHAN_TIMEOUT_MINUTES=30)
    w = _orphan_world(inst, aws)
    answer = reclaims(inst, None)
    assert "2 orphan instances" in answer["message"]
    assert set(_states(aws, w).values()) == {"running"}


def test_machines_in_hostfactorys_list_survive_a_lost_state_file(
        inst: HostFactory, aws: Any) -> None:
    inst.write_config(AWS_ORPHAN_TIMEOUT_MINUTES=30)
    w = _orphan_world(inst, aws)
    inst.state_path.unlink()
    reclaims(inst, w["held"])
    states = _states(aws, w)
    assert [states[m["machineId"]] for m in w["held"]] == ["running", "running"]
    assert states[w["old"]] in ("shutting-down", "terminated")


def test_instances_of_an_abandoned_launch_are_orphans(inst: HostFactory, aws: Any) -> None:
    inst.write_config(AWS_ORPHAN_TIMEOUT_MINUTES=30)
    held = inst.held(RI, 1, in_process=True)
    left = inst.held(RI, 1, in_process=True)[0]["machineId"]
    data = inst.state()
    for rec in data["requests"].values():
        if left in rec.get("instances", {}):
            rec["launch"] = "abandoned"
    inst.state_path.write_text(json.dumps(data))
    events.age_instance(left, 60)
    events.age_instance(held[0]["machineId"], 60)
    reclaims(inst, held)
    assert events.state_name(aws, left) in ("shutting-down", "terminated")
    assert events.state_name(aws, held[0]["machineId"]) == "running"


# -- the admin command ------------------------------------------------------------------------

def orphans_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                *args: str, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(["orphans", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_orphans_command_lists_them_as_a_table_and_as_json(
        inst: HostFactory, aws: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    w = _orphan_world(inst, aws)
    code, out, err = orphans_cli(monkeypatch, capsys)
    assert code == 1  # like a check: orphans found is non-zero
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["INSTANCE", "TYPE", "STATE"]
    assert [x.split()[0] for x in lines[1:]] == [w["old"], w["young"]]  # oldest first
    assert "req-from-a-lost-state" in lines[1] and "2h00m" in lines[1]
    assert "sweeping" in err  # progress goes to stderr, not into the table

    code, out, _ = orphans_cli(monkeypatch, capsys, "--json", "--older-than", "60")
    assert code == 1
    rows = json.loads(out)["orphans"]
    assert [r["instanceId"] for r in rows] == [w["old"]]
    assert rows[0]["requestId"] == "req-from-a-lost-state" and rows[0]["state"] == "running"
    assert set(_states(aws, w).values()) == {"running"}  # listing touches nothing


def test_orphans_command_with_none_exits_zero(
        inst: HostFactory, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    inst.held(RI, 1, in_process=True)
    code, out, _ = orphans_cli(monkeypatch, capsys, "--terminate")
    assert code == 0 and out.strip() == "no orphan instances"


def test_orphans_command_terminates_only_after_yes(
        inst: HostFactory, aws: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    w = _orphan_world(inst, aws)
    code, _, err = orphans_cli(monkeypatch, capsys, "--terminate", stdin="no\n")
    assert code == 1 and "nothing terminated" in err
    assert set(_states(aws, w).values()) == {"running"}

    code, _, err = orphans_cli(monkeypatch, capsys, "--terminate", stdin="yes\n")
    assert code == 0 and "type 'yes'" in err
    states = _states(aws, w)
    for key in ("old", "young"):
        assert states.pop(w[key]) in ("shutting-down", "terminated")
    assert set(states.values()) == {"running"}  # held, foreign, untagged


def test_orphans_command_yes_flag_and_json_report(
        inst: HostFactory, aws: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    w = _orphan_world(inst, aws)
    code, out, _ = orphans_cli(monkeypatch, capsys, "--terminate", "--yes", "--json",
                               "--older-than", "60")
    assert code == 0
    assert json.loads(out)["terminated"] == [w["old"]]
    assert events.state_name(aws, w["young"]) == "running"


def test_orphans_command_refuses_to_terminate_with_an_empty_state(
        inst: HostFactory, aws: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    w = _orphan_world(inst, aws)
    inst.state_path.unlink()
    code, out, err = orphans_cli(monkeypatch, capsys, "--terminate", "--yes")
    assert code == 1 and "refusing" in err
    held_ids = [m["machineId"] for m in w["held"]]
    assert all(i in out for i in held_ids)  # listed: the admin sees what it would have hit
    assert set(_states(aws, w).values()) == {"running"}


def test_orphans_command_error_exits_one(
        inst: HostFactory, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fail_on(monkeypatch, "DescribeInstances", "AuthFailure")
    code, out, err = orphans_cli(monkeypatch, capsys)
    assert code == 1 and out == "" and "AuthFailure" in err
