"""What the cloud does behind HostFactory's back, done to moto's EC2 backend directly.

moto never interrupts a Spot Instance by itself, and it leaves two things out that EC2
reports: the instance's SpotInstanceRequestId, and a real Status.UpdateTime on the Spot
request (moto always says 2015-01-01). These helpers fill both in on the objects of one
test (no class of moto is patched), then play EC2's part: the notice, the reclaim, a stop
from the console. The backend is the same whether the test talks to it in-process
(mock_aws) or through the sandbox server running in this pytest process.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from tests.support.server import REGION, image_id

# -- moto's backend ---------------------------------------------------------------------------

def backend() -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    return ec2_backends[DEFAULT_ACCOUNT_ID][REGION]


def moto_instance(iid: str) -> Any:
    return backend().get_instance(iid)


_REQUEST_CLASS: list[type] = []


def _faithful_request_class() -> type:
    """moto's Spot request class with a settable Status.UpdateTime (made once)."""
    if _REQUEST_CLASS:
        return _REQUEST_CLASS[0]
    from moto.ec2.models.spot_requests import SpotInstanceRequest as MotoRequest

    class SpotInstanceRequest(MotoRequest):  # same name: moto's serializer keys on it
        """A Spot request whose Status.UpdateTime is the time of its last status change."""

        __module__ = MotoRequest.__module__  # moto's model registry wants moto.<service>

        @property
        def status(self) -> dict[str, Any]:
            out = dict(MotoRequest.status.fget(self))  # type: ignore[attr-defined]
            when = getattr(self, "hf_update_time", None)
            if when is not None:
                out["UpdateTime"] = when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            return out

    _REQUEST_CLASS.append(SpotInstanceRequest)
    return SpotInstanceRequest


def link_spot_requests() -> dict[str, str]:
    """Give every Spot Instance moto launched its SpotInstanceRequestId, as EC2 does.

    Returns {instance id: spot request id}.
    """
    cls = _faithful_request_class()
    out = {}
    for req in backend().spot_instance_requests.values():
        req.__class__ = cls
        req.instance.spot_instance_request_id = req.id
        out[req.instance.id] = req.id
    return out


def spot_request_of(iid: str) -> Any:
    for req in backend().spot_instance_requests.values():
        if req.instance.id == iid:
            return req
    raise KeyError(f"no spot request for {iid}")


def set_spot_status(iid: str, code: str, seconds_ago: float = 0, message: str = "") -> None:
    """EC2 changes the Spot request's status (e.g. the interruption notice)."""
    req = spot_request_of(iid)
    req._status_code = code
    req.status_message = message or f"Spot request status {code}"
    req.hf_update_time = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)


def set_instance_state(iid: str, name: str, reason_code: str = "",
                       reason_message: str = "") -> None:
    """EC2 moves the instance to ``name`` with a StateReason, as a reclaim would."""
    from moto.ec2.models.instances import StateReason

    codes = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48,
             "stopping": 64, "stopped": 80}
    inst = moto_instance(iid)
    inst._state.name = name
    inst._state.code = codes[name]
    inst.state_reason = StateReason(reason_message, reason_code)


def age_instance(iid: str, minutes: float) -> None:
    """Pretend the instance was launched ``minutes`` ago."""
    inst = moto_instance(iid)
    inst.launch_time = inst.launch_time - timedelta(minutes=minutes)


def state_name(ec2: Any, iid: str) -> str:
    res = ec2.describe_instances(InstanceIds=[iid])["Reservations"]
    return res[0]["Instances"][0]["State"]["Name"]


def launch_raw(ec2: Any, tags: dict[str, str] | None, count: int = 1,
               token: str | None = None) -> list[str]:
    """Instances launched outside HostFactory (another provider, untagged, or tagged by
    hand). ``token``: the ClientToken, e.g. ``<request id>-0`` as the plugin's own
    RunInstances sets it, for a launch the plugin made and then lost track of."""
    params: dict[str, Any] = {"ImageId": image_id(ec2), "MinCount": count, "MaxCount": count,
                              "InstanceType": "t3.micro"}
    if token:
        params["ClientToken"] = token
    if tags:
        params["TagSpecifications"] = [{"ResourceType": "instance", "Tags": [
            {"Key": k, "Value": v} for k, v in tags.items()]}]
    return [i["InstanceId"] for i in ec2.run_instances(**params)["Instances"]]


def forget_terminated() -> list[str]:
    """EC2 stops listing a terminated instance about an hour after it ended; moto lists it
    forever. Drops every terminated instance from moto's reservations; returns their ids."""
    gone = []
    for res in backend().reservations.values():
        for inst in list(res.instances):
            if inst._state.name == "terminated":
                res.instances.remove(inst)
                gone.append(inst.id)
    return gone
