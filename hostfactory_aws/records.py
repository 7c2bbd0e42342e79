"""Pure functions over the state file's request records (plain dicts).

A create record:  {"kind": "create", "templateId", "units", "api", "createdAt",
                   "launch": "launching" | "done" | "unknown", "instances": {id: {"units",
                   "name", "type", "state", "returnId"}}, "fleetIds", "errors", "status",
                   "endedAt", "cleaned"}
A return record:  {"kind": "return", "createdAt", "machines": {id: {"name", "refused",
                   "requestId"}}, "status", "endedAt"}
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from hostfactory_aws.machines import GONE_STATES

# HostFactory kills a call after its action timeout (240-300 s in published configs): an
# in-flight record older than this belongs to a call that is certainly dead.
IN_FLIGHT_MAX_SEC = 900


def new_request_id(prefix: str) -> str:
    import uuid  # lazy: pulls in platform, ~10 ms that getAvailableTemplates does not need

    return f"{prefix}-{uuid.uuid4()}"


def _owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": os.uname().nodename}


def new_create(template_id: str, units: int, api: str, now: float) -> dict[str, Any]:
    return {"kind": "create", "templateId": template_id, "units": units, "api": api,
            "createdAt": now, "launch": "launching", "instances": {}, "fleetIds": [],
            "errors": [], "status": "running", "endedAt": None, "cleaned": False,
            "polled": False, **_owner()}


def new_return(now: float) -> dict[str, Any]:
    return {"kind": "return", "createdAt": now, "machines": {}, "status": "running",
            "endedAt": None, "phase": "terminating", **_owner()}


def in_flight(rec: dict[str, Any]) -> bool:
    """The call that wrote this record has not finished its AWS work yet."""
    if rec.get("kind") == "create":
        return rec.get("launch") == "launching"
    return rec.get("phase") == "terminating"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale(rec: dict[str, Any], now: float,
          alive: Callable[[int], bool] = pid_alive) -> bool:
    """An in-flight record whose call died: HostFactory never received its id."""
    if not in_flight(rec):
        return False
    if now - rec.get("createdAt", 0) > IN_FLIGHT_MAX_SEC:
        return True
    same_host = rec.get("host") == os.uname().nodename
    return same_host and isinstance(rec.get("pid"), int) and not alive(rec["pid"])


def instance_live(info: dict[str, Any]) -> bool:
    """Still counted against the template: not returned and not known to be gone."""
    return not info.get("returnId") and info.get("state") not in GONE_STATES


# A launch whose reply was lost holds what it asked for until its instances are seen or
# this long has passed (getRequestStatus gives up on it after the same time).
UNKNOWN_LAUNCH_HOLD_SEC = 300


def held_units(data: dict[str, Any], now: float | None = None) -> dict[str, float]:
    """Units each template holds now; a launch in progress, or whose outcome is unknown,
    holds what it asked for (else a request in that window could pass maxNumber)."""
    now = time.time() if now is None else now
    held: dict[str, float] = {}
    for rec in data["requests"].values():
        if rec.get("kind") != "create":
            continue
        unknown = (rec.get("launch") == "unknown" and not rec["instances"]
                   and now - rec.get("createdAt", 0) < UNKNOWN_LAUNCH_HOLD_SEC)
        if rec.get("launch") == "launching" or unknown:
            units = float(max(rec["units"], len(rec["instances"])))
        else:
            units = sum(float(i.get("units", 1)) for i in rec["instances"].values()
                        if instance_live(i))
        held[rec["templateId"]] = held.get(rec["templateId"], 0.0) + units
    return held


def owner_of(data: dict[str, Any]) -> dict[str, str]:
    """instance id -> create request id, for every instance the state knows."""
    out = {}
    for rid, rec in data["requests"].items():
        if rec.get("kind") == "create":
            for iid in rec["instances"]:
                out[iid] = rid
    return out


def names_index(data: dict[str, Any]) -> dict[str, str]:
    """host name -> instance id, for returns that carry only the name."""
    out = {}
    for rec in data["requests"].values():
        if rec.get("kind") == "create":
            for iid, info in rec["instances"].items():
                if info.get("name"):
                    out[info["name"]] = iid
    return out


def live_machines(data: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for rec in data["requests"].values():
        if rec.get("kind") == "create":
            for iid, info in rec["instances"].items():
                if instance_live(info):
                    out.append({"machineId": iid, "name": info.get("name") or ""})
    return out


def returned_ids(data: dict[str, Any]) -> set[str]:
    out = set()
    for rec in data["requests"].values():
        if rec.get("kind") == "return":
            out.update(m for m, info in rec["machines"].items() if not info.get("refused"))
    return out
