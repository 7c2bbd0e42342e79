"""Pure mapping: EC2 instances -> HostFactory machines, machines -> request status.

No I/O here: every rule of the contract's status table lives in these functions, so they
can be tested without AWS or mocks.
"""

from __future__ import annotations

from hostfactory_aws import tags as tagmod

TYPE_CHECKING = False  # importing typing costs every call ~6 ms: annotations only
if TYPE_CHECKING:
    from typing import Any

GONE_STATES = frozenset({"shutting-down", "terminated", "stopping", "stopped"})
EXECUTING, SUCCEED, FAIL = "executing", "succeed", "fail"
RUNNING, COMPLETE, COMPLETE_WITH_ERROR = "running", "complete", "complete_with_error"
# A return whose instance EC2 no longer lists at all, this long after we terminated it,
# is gone (terminated instances stay listed for about an hour, so this is rare).
RETURN_VANISHED_AFTER_SEC = 300


def epoch(value: Any) -> int:
    """Unix seconds of a botocore datetime, an ISO 8601 string or a number; 0 if none.
    (datetime is imported only when a string is met: getAvailableTemplates never parses.)"""
    if isinstance(value, (int, float)):
        return int(value)
    if hasattr(value, "timestamp"):
        return int(value.timestamp())
    if isinstance(value, str) and value:
        from datetime import datetime

        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    return 0


def state_of(inst: dict[str, Any]) -> str:
    return inst.get("State", {}).get("Name", "unknown")


def host_name(inst: dict[str, Any], known: str = "") -> str:
    """Private DNS name, else private IP, else what we saw before, else the instance id."""
    return (inst.get("PrivateDnsName") or inst.get("PrivateIpAddress") or known
            or inst["InstanceId"])


def hf_machine(inst: dict[str, Any], result: str, message: str = "",
               known_name: str = "") -> dict[str, Any]:
    """One machine of a getRequestStatus answer; LSF's rcAccount when the instance has one."""
    tags = tagmod.from_aws(inst.get("Tags"))
    out = {
        "machineId": inst["InstanceId"],
        "name": host_name(inst, known_name),
        "result": result,
        "status": state_of(inst),
        "privateIpAddress": inst.get("PrivateIpAddress"),
        "publicIpAddress": inst.get("PublicIpAddress"),
        "publicDnsName": inst.get("PublicDnsName") or None,
        "launchtime": epoch(inst.get("LaunchTime")),
        "instanceType": inst.get("InstanceType"),
        "priceType": "spot" if inst.get("InstanceLifecycle") == "spot" else "ondemand",
        "instanceTags": tagmod.to_tag_string(tags),
        "message": message,
    }
    if tagmod.RC_ACCOUNT in tags:  # tagged at launch in LSF mode (IBM's RC_ACCOUNT)
        out["rcAccount"] = tags[tagmod.RC_ACCOUNT]
    return out


def missing_machine(machine_id: str, name: str, result: str, message: str) -> dict[str, Any]:
    """A machine we know of that EC2 did not list in this poll."""
    return {"machineId": machine_id, "name": name or machine_id, "result": result,
            "status": "unknown", "privateIpAddress": None, "publicIpAddress": None,
            "launchtime": 0, "message": message}


def _reason(inst: dict[str, Any]) -> str:
    reason = inst.get("StateReason") or {}
    text = reason.get("Message") or reason.get("Code") or inst.get("StateTransitionReason")
    return f"instance is {state_of(inst)}" + (f": {text}" if text else "")


def create_result(inst: dict[str, Any], now: float, pending_timeout: float) -> tuple[str, str]:
    """This create request's outcome for one instance: (result, message)."""
    state = state_of(inst)
    if state in GONE_STATES:
        return FAIL, _reason(inst)
    if state == "running":
        if inst.get("PrivateIpAddress"):
            return SUCCEED, ""
        return EXECUTING, "running, waiting for a private IP address"
    if state == "pending":
        waited = now - epoch(inst.get("LaunchTime"))
        if epoch(inst.get("LaunchTime")) and waited > pending_timeout:
            return FAIL, (f"pending for {int(waited)}s, more than "
                          f"AWS_INSTANCE_PENDING_TIMEOUT_SEC={int(pending_timeout)}; terminated")
        return EXECUTING, ""
    return EXECUTING, f"EC2 state '{state}'"


def overdue_pending(inst: dict[str, Any], now: float, pending_timeout: float) -> bool:
    return state_of(inst) == "pending" and create_result(inst, now, pending_timeout)[0] == FAIL


def create_status(results: list[str], requested_units: float, running_units: float,
                  errors: list[str], more_coming: bool = False) -> tuple[str, str]:
    """Create request status from its machines' results.

    A shortfall with every launched machine up is ``complete`` with a message (the grid can
    use those hosts and ask again); no machine at all, or any failed one, is
    ``complete_with_error``; anything still in flight is ``running``, and so is a short
    request whose fleet or group may still launch (``more_coming``).
    """
    err = "; ".join(errors)
    if EXECUTING in results:
        return RUNNING, ""
    if more_coming and running_units < requested_units:
        return RUNNING, err
    if not results:
        return COMPLETE_WITH_ERROR, err or "no machines were launched"
    if FAIL in results:
        failed = results.count(FAIL)
        msg = f"{failed} of {len(results)} machines failed"
        return COMPLETE_WITH_ERROR, f"{msg}; {err}" if err else msg
    if running_units < requested_units:
        msg = f"got {_num(running_units)} of {_num(requested_units)} units requested"
        return COMPLETE, f"{msg}: {err}" if err else msg
    return COMPLETE, err


def return_result(inst: dict[str, Any] | None, refused: str, age: float) -> tuple[str, str]:
    """A return request's outcome for one machine: (result, message)."""
    if refused:
        return FAIL, refused
    if inst is None:
        if age > RETURN_VANISHED_AFTER_SEC:
            return SUCCEED, "no longer listed by EC2"
        return EXECUTING, "not listed by EC2 yet"
    if state_of(inst) == "terminated":
        return SUCCEED, ""
    return EXECUTING, ""


def return_status(results: list[str]) -> str:
    if EXECUTING in results:
        return RUNNING
    if FAIL in results:
        return COMPLETE_WITH_ERROR
    return COMPLETE


def units(instance_type: str | None, weights: dict[str, float]) -> float:
    return float(weights.get(instance_type or "", 1.0)) if weights else 1.0


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
