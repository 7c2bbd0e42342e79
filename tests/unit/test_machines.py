"""machines.py: the contract's status table, row by row, and the machine fields HF reads."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from hostfactory_aws import machines
from hostfactory_aws.machines import (
    COMPLETE,
    COMPLETE_WITH_ERROR,
    EXECUTING,
    FAIL,
    RUNNING,
    SUCCEED,
)

LAUNCH = datetime(2024, 12, 19, 14, 52, 22, tzinfo=timezone.utc)
T0 = LAUNCH.timestamp()
TIMEOUT = 180.0


def inst(state: str = "running", ip: str | None = "10.0.57.22", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"InstanceId": "i-0721bb06651cad7f1", "State": {"Name": state},
                           "LaunchTime": LAUNCH, "InstanceType": "m5.large"}
    if ip:
        out["PrivateIpAddress"] = ip
        out["PrivateDnsName"] = "ip-" + ip.replace(".", "-") + ".ec2.internal"
    out.update(extra)
    return out


# --- create requests ---------------------------------------------------------------------

def test_pending_is_executing() -> None:
    assert machines.create_result(inst("pending"), T0 + 10, TIMEOUT) == (EXECUTING, "")


def test_running_with_ip_succeeds() -> None:
    assert machines.create_result(inst("running"), T0 + 10, TIMEOUT) == (SUCCEED, "")


def test_running_without_ip_is_executing() -> None:
    result, msg = machines.create_result(inst("running", ip=None), T0 + 10, TIMEOUT)
    assert result == EXECUTING
    assert "private IP" in msg


@pytest.mark.parametrize("state", ["stopping", "stopped", "shutting-down", "terminated"])
def test_gone_states_fail_with_state_reason(state: str) -> None:
    i = inst(state, StateReason={"Code": "Server.InsufficientInstanceCapacity",
                                 "Message": "Server.InsufficientInstanceCapacity: no room"})
    result, msg = machines.create_result(i, T0 + 10, TIMEOUT)
    assert result == FAIL
    assert state in msg
    assert "InsufficientInstanceCapacity: no room" in msg


def test_state_reason_code_only() -> None:
    i = inst("terminated", StateReason={"Code": "Client.UserInitiatedShutdown"})
    assert "Client.UserInitiatedShutdown" in machines.create_result(i, T0, TIMEOUT)[1]


def test_fail_without_reason_still_has_a_message() -> None:
    result, msg = machines.create_result(inst("stopped"), T0, TIMEOUT)
    assert result == FAIL
    assert msg == "instance is stopped"


def test_pending_past_timeout_fails_naming_the_setting() -> None:
    i = inst("pending", ip=None)
    result, msg = machines.create_result(i, T0 + TIMEOUT + 1, TIMEOUT)
    assert result == FAIL
    assert "AWS_INSTANCE_PENDING_TIMEOUT_SEC=180" in msg
    assert machines.overdue_pending(i, T0 + TIMEOUT + 1, TIMEOUT)


def test_pending_at_timeout_is_still_executing() -> None:
    i = inst("pending")
    assert machines.create_result(i, T0 + TIMEOUT, TIMEOUT)[0] == EXECUTING
    assert not machines.overdue_pending(i, T0 + TIMEOUT, TIMEOUT)


def test_pending_without_launch_time_never_times_out() -> None:
    i = inst("pending")
    del i["LaunchTime"]
    assert machines.create_result(i, T0 + 10 * TIMEOUT, TIMEOUT)[0] == EXECUTING


def test_running_is_never_overdue() -> None:
    assert not machines.overdue_pending(inst("running"), T0 + 10 * TIMEOUT, TIMEOUT)


# --- create request status ---------------------------------------------------------------

def test_create_running_while_any_executing() -> None:
    assert machines.create_status([SUCCEED, EXECUTING], 2, 1, []) == (RUNNING, "")
    assert machines.create_status([FAIL, EXECUTING], 2, 0, [])[0] == RUNNING


def test_create_complete() -> None:
    assert machines.create_status([SUCCEED, SUCCEED], 2, 2, []) == (COMPLETE, "")


def test_create_complete_with_shortfall_says_so() -> None:
    status, msg = machines.create_status(
        [SUCCEED, SUCCEED], 4, 2, ["InsufficientInstanceCapacity: none left in us-east-1a"])
    assert status == COMPLETE
    assert msg == ("got 2 of 4 units requested: "
                   "InsufficientInstanceCapacity: none left in us-east-1a")


def test_create_shortfall_in_fractional_units() -> None:
    status, msg = machines.create_status([SUCCEED], 4, 2.5, [])
    assert (status, msg) == (COMPLETE, "got 2.5 of 4 units requested")


def test_create_complete_with_error_on_any_fail() -> None:
    status, msg = machines.create_status([SUCCEED, FAIL, SUCCEED], 3, 2, ["X: y"])
    assert status == COMPLETE_WITH_ERROR
    assert msg == "1 of 3 machines failed; X: y"


def test_create_no_machines_is_an_error() -> None:
    assert machines.create_status([], 2, 0, []) == (COMPLETE_WITH_ERROR,
                                                   "no machines were launched")
    assert machines.create_status([], 2, 0, ["VcpuLimitExceeded: quota"]) == (
        COMPLETE_WITH_ERROR, "VcpuLimitExceeded: quota")


# --- return requests ---------------------------------------------------------------------

def test_return_terminated_succeeds() -> None:
    assert machines.return_result(inst("terminated"), "", 30) == (SUCCEED, "")


@pytest.mark.parametrize("state", ["running", "shutting-down", "stopping", "pending"])
def test_return_not_yet_terminated_is_executing(state: str) -> None:
    assert machines.return_result(inst(state), "", 30)[0] == EXECUTING


def test_return_refused_fails_with_message() -> None:
    result, msg = machines.return_result(inst("running"), "TerminateInstances refused: "
                                         "UnauthorizedOperation: no", 30)
    assert result == FAIL
    assert "UnauthorizedOperation" in msg


def test_return_vanished_after_grace_succeeds() -> None:
    grace = machines.RETURN_VANISHED_AFTER_SEC
    assert machines.return_result(None, "", grace + 1)[0] == SUCCEED
    assert machines.return_result(None, "", grace - 1)[0] == EXECUTING


def test_return_status() -> None:
    assert machines.return_status([SUCCEED, EXECUTING]) == RUNNING
    assert machines.return_status([SUCCEED, SUCCEED]) == COMPLETE
    assert machines.return_status([SUCCEED, FAIL]) == COMPLETE_WITH_ERROR
    assert machines.return_status([FAIL, EXECUTING]) == RUNNING


# --- hf_machine --------------------------------------------------------------------------

def test_hf_machine_fields() -> None:
    i = inst("running", PublicIpAddress="54.1.2.3",
             PublicDnsName="ec2-54-1-2-3.compute-1.amazonaws.com",
             Tags=[{"Key": "hostfactory:provider", "Value": "awsinst"},
                   {"Key": "Project", "Value": "grid"}])
    m = machines.hf_machine(i, SUCCEED)
    assert m == {
        "machineId": "i-0721bb06651cad7f1", "name": "ip-10-0-57-22.ec2.internal",
        "result": "succeed", "status": "running", "privateIpAddress": "10.0.57.22",
        "publicIpAddress": "54.1.2.3", "publicDnsName": "ec2-54-1-2-3.compute-1.amazonaws.com",
        "launchtime": 1734619942, "instanceType": "m5.large", "priceType": "ondemand",
        "instanceTags": "hostfactory:provider=awsinst;Project=grid", "message": ""}


def test_hf_machine_launchtime_is_int_epoch() -> None:
    m = machines.hf_machine(inst(), SUCCEED)
    assert isinstance(m["launchtime"], int) and m["launchtime"] == int(T0)
    local = LAUNCH.astimezone(timezone(timedelta(hours=-5)))
    assert machines.hf_machine(inst(LaunchTime=local), SUCCEED)["launchtime"] == int(T0)
    iso = machines.hf_machine(inst(LaunchTime="2024-12-19T14:52:22Z"), SUCCEED)
    assert iso["launchtime"] == int(T0)


def test_name_falls_back_to_private_ip() -> None:
    i = inst(PrivateDnsName="")
    assert machines.hf_machine(i, SUCCEED)["name"] == "10.0.57.22"


def test_name_falls_back_to_known_name_then_instance_id() -> None:
    i = inst("terminated", ip=None, PrivateDnsName="")
    assert machines.hf_machine(i, SUCCEED, known_name="ip-10-0-1-1.ec2.internal")["name"] == \
        "ip-10-0-1-1.ec2.internal"
    assert machines.hf_machine(i, SUCCEED)["name"] == "i-0721bb06651cad7f1"


def test_dns_name_beats_known_name() -> None:
    m = machines.hf_machine(inst(), SUCCEED, known_name="old-name")
    assert m["name"] == "ip-10-0-57-22.ec2.internal"


def test_spot_price_type() -> None:
    assert machines.hf_machine(inst(InstanceLifecycle="spot"), SUCCEED)["priceType"] == "spot"
    assert machines.hf_machine(inst(), SUCCEED)["priceType"] == "ondemand"


def test_no_tags_and_no_public_address() -> None:
    m = machines.hf_machine(inst(PublicDnsName=""), EXECUTING, "waiting")
    assert m["instanceTags"] == ""
    assert m["publicIpAddress"] is None and m["publicDnsName"] is None
    assert m["message"] == "waiting"


def test_missing_machine() -> None:
    m = machines.missing_machine("i-1", "", EXECUTING, "not listed yet")
    assert m["name"] == "i-1"
    assert (m["result"], m["privateIpAddress"], m["message"]) == (EXECUTING, None,
                                                                  "not listed yet")


# --- units -------------------------------------------------------------------------------

def test_units() -> None:
    weights = {"m5.xlarge": 1.0, "m5.2xlarge": 2.0}
    assert machines.units("m5.2xlarge", weights) == 2.0
    assert machines.units("m5.xlarge", weights) == 1.0
    assert machines.units("c5.large", weights) == 1.0
    assert machines.units(None, weights) == 1.0
    assert machines.units("m5.2xlarge", {}) == 1.0


def test_create_short_fleet_that_may_still_launch_keeps_running() -> None:
    assert machines.create_status([SUCCEED], 4, 1, [], more_coming=True) == (RUNNING, "")
    assert machines.create_status([], 4, 0, ["X: y"], more_coming=True) == (RUNNING, "X: y")
    assert machines.create_status([SUCCEED] * 4, 4, 4, [], more_coming=True) == (COMPLETE, "")
