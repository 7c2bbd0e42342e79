"""Pure functions over the state file's request records (plain dicts).

A create record:  {"kind": "create", "templateId", "units", "api", "createdAt",
                   "launch": "launching" | "done" | "unknown" | "abandoned",
                   "journal": token of the answer journal, "answered": bool,
                   "instances": {id: {"units", "name", "type", "state", "returnId"}},
                   "extra": {id: {"units", "type", "why"}} (hosts never given to HostFactory),
                   "delivered": [ids of HostFactory's final answer] or None,
                   "fleetIds", "launchTemplateId", "launchTemplateName", "errors", "status",
                   "settled", "cleaned", "cleanup": {"attempts", "next", "error"}, "endedAt"}
A return record:  {"kind": "return", "createdAt", "machines": {id: {"name", "refused",
                   "requestId"}}, "status", "endedAt", "phase", "journal", "answered"}

Life cycle of a create record: reserved (launching) -> launched (done/unknown) -> answered
(its id is in the answer journal) -> final (HostFactory got a final answer: ``delivered``)
-> settled (its fleet or group launches nothing more) -> cleaned (fleet, group, template
deleted) -> pruned (REQUEST_RETENTION_HOURS after ``endedAt``, set only once cleaned).
"""

from __future__ import annotations

import os
import time

from hostfactory_aws import tags as tagmod
from hostfactory_aws.machines import GONE_STATES, epoch, state_of

TYPE_CHECKING = False  # importing typing costs every call ~6 ms: annotations only
if TYPE_CHECKING:
    from typing import Any

# An instance we launched that EC2 does not list yet (eventual consistency) is not gone;
# past this, one that no sweep lists any more is.
NOT_LISTED_GRACE_SEC = 600
CLEANUP_FIRST_RETRY_SEC = 60
CLEANUP_MAX_RETRY_SEC = 3600


def new_request_id(prefix: str) -> str:
    import uuid  # lazy: pulls in platform, ~10 ms that getAvailableTemplates does not need

    return f"{prefix}-{uuid.uuid4()}"


def _owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": os.uname().nodename}


def new_create(template_id: str, units: int, api: str, now: float,
               journal: str | None = None) -> dict[str, Any]:
    return {"kind": "create", "templateId": template_id, "units": units, "api": api,
            "createdAt": now, "launch": "launching", "instances": {}, "extra": {},
            "delivered": None, "fleetIds": [], "errors": [], "status": "running",
            "endedAt": None, "cleaned": False, "polled": False, "journal": journal,
            "answered": False, **_owner()}


def new_return(now: float, journal: str | None = None) -> dict[str, Any]:
    return {"kind": "return", "createdAt": now, "machines": {}, "status": "running",
            "endedAt": None, "phase": "terminating", "journal": journal, "answered": False,
            **_owner()}


def reap_candidate(rec: dict[str, Any]) -> bool:
    """A record whose answer is not known to be written: its call runs, died, or answered
    without the record hearing of it yet (the journal says which)."""
    if rec.get("answered") is not False or rec.get("launch") == "abandoned":
        return False  # records of older versions carry no mark: never reaped
    return rec.get("kind") == "create" or rec.get("phase") == "terminating"


def instance_live(info: dict[str, Any]) -> bool:
    """Still counted against the template: not returned and not known to be gone."""
    return not info.get("returnId") and info.get("state") not in GONE_STATES


# A launch whose reply was lost holds what it asked for until its instances are seen or
# this long has passed (getRequestStatus gives up on it after the same time).
UNKNOWN_LAUNCH_HOLD_SEC = 300
# The longest a call can be at work: HostFactory kills a script after its action timeout
# (240 s by default), and VERB_DEADLINE_SEC ends it sooner.
CALL_MAX_SEC = 300


def held_units(data: dict[str, Any], now: float | None = None) -> dict[str, float]:
    """Units each template holds now; a launch in progress, or whose outcome is unknown,
    holds what it asked for (else a request in that window could pass maxNumber)."""
    now = time.time() if now is None else now
    held: dict[str, float] = {}
    for rec in data["requests"].values():
        if rec.get("kind") != "create":
            continue
        if rec.get("launch") == "abandoned":
            continue
        unknown = (rec.get("launch") == "unknown" and not rec["instances"]
                   and now - rec.get("createdAt", 0) < UNKNOWN_LAUNCH_HOLD_SEC)
        if (rec.get("launch") == "launching" and not rec.get("doubt")) or unknown:
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
    """What HostFactory holds: hosts of live launches it did not return (stopped or ended
    by EC2 included: those are what getReturnRequests must report)."""
    out = []
    for rec in data["requests"].values():
        if rec.get("kind") == "create" and rec.get("launch") != "abandoned":
            for iid, info in rec["instances"].items():
                if not info.get("returnId") and not info.get("vanished"):
                    out.append({"machineId": iid, "name": info.get("name") or ""})
    return out


def returned_ids(data: dict[str, Any]) -> set[str]:
    out = set()
    for rec in data["requests"].values():
        if rec.get("kind") == "return":
            out.update(m for m, info in rec["machines"].items() if not info.get("refused"))
    return out


def is_async(rec: dict[str, Any]) -> bool:
    """Fleets and groups that launch after the call returned."""
    return rec.get("api") in ("SpotFleet", "ASG") or rec.get("fleetType") in ("request",
                                                                              "maintain")


def _units(rec: dict[str, Any], itype: str | None) -> float:
    weights = rec.get("weights") or {}
    return float(weights.get(itype or "", 1.0)) if weights else 1.0


def request_index(found: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Request id -> ids of the swept instances tagged with it: one pass per sweep, so that
    learning stays linear in machines however many records there are."""
    out: dict[str, list[str]] = {}
    for iid, inst in found.items():
        for tag in inst.get("Tags") or ():
            if tag.get("Key") == tagmod.REQUEST_ID:
                out.setdefault(tag.get("Value", ""), []).append(iid)
    return out


def learn(rec: dict[str, Any], rid: str, found: dict[str, dict[str, Any]],
          now: float, index: dict[str, list[str]] | None = None) -> None:
    """What one sweep tells a create record, in place.

    New instances tagged with the request join it while it is short of what it asked (in
    launch order); after HostFactory's final answer, or beyond what was asked, they are
    ``extra``: never given to HostFactory, not held against maxNumber, orphans. Fleet ids
    come from EC2's own tags. A known instance that no sweep lists past the grace is gone.
    """
    if rec.get("kind") != "create" or rec.get("launch") == "abandoned":
        return
    rec.setdefault("extra", {})
    held = sum(float(i.get("units", 1.0)) for i in rec["instances"].values())
    tagged = (index if index is not None else request_index(found)).get(rid, [])
    new = sorted((iid for iid in tagged
                  if iid not in rec["instances"] and iid not in rec["extra"]),
                 key=lambda i: (epoch(found[i].get("LaunchTime")), i))
    for iid in new:
        inst = found[iid]
        units = _units(rec, inst.get("InstanceType"))
        if rec.get("delivered") is None and held < float(rec["units"]):
            rec["instances"][iid] = {"units": units, "name": "",
                                     "type": inst.get("InstanceType"), "returnId": None}
            held += units
        else:
            why = "late" if rec.get("delivered") is not None else "beyond what was asked"
            rec["extra"][iid] = {"units": units, "type": inst.get("InstanceType"), "why": why}
    tags_seen = {tagmod.from_aws(found[i].get("Tags")).get(k)
                 for i in [*rec["instances"], *rec["extra"]] if i in found
                 for k in tagmod.FLEET_ID_TAGS}
    if rec.get("api") in ("EC2Fleet", "SpotFleet"):
        for fid in sorted(f for f in tags_seen if f):
            if fid not in rec["fleetIds"]:
                rec["fleetIds"].append(fid)
    for iid, info in rec["instances"].items():
        inst = found.get(iid)
        if inst is not None:
            info["state"] = state_of(inst)
            info["name"] = info.get("name") or inst.get("PrivateDnsName") or \
                inst.get("PrivateIpAddress") or ""
        elif now - rec.get("createdAt", now) > NOT_LISTED_GRACE_SEC \
                and info.get("state") not in GONE_STATES:
            info["state"], info["vanished"] = "terminated", True


def own_resources(rec: dict[str, Any], mine: list[dict[str, Any]]) -> None:
    """A rebuilt record takes in its fleets, groups and launch template as AWS lists them
    (Resources of apis.left_behind); what they say of the API wins over a guess."""
    for res in mine:
        if res["api"] == "":  # the launch template made for the request
            rec["launchTemplateName"] = res["launchTemplateName"]
            rec["launchTemplateId"] = res["id"]
            continue
        if rec.get("api") != res["api"]:
            rec["api"] = res["api"]
            rec["fleetType"] = res.get("fleetType")
        if res["id"] not in rec["fleetIds"]:
            rec["fleetIds"].append(res["id"])
        rec["target"] = max(int(rec.get("target") or 0), int(res.get("target") or 0))


def running_units(rec: dict[str, Any], found: dict[str, dict[str, Any]]) -> float:
    """Units of the record's own hosts that run now (extra hosts never count)."""
    return sum(float(info.get("units", 1.0)) for iid, info in rec["instances"].items()
               if iid in found and state_of(found[iid]) == "running"
               and not info.get("returnId"))


def needs_settle(rec: dict[str, Any]) -> bool:
    """Ended (HostFactory has its final answer, or the launch was abandoned) and its fleet
    or group may still launch."""
    if rec.get("kind") != "create" or not is_async(rec) or rec.get("settled"):
        return False
    if rec.get("launch") == "abandoned":
        return bool(rec.get("fleetIds"))
    return rec.get("launch") in ("done", "unknown") and rec.get("status") not in (None,
                                                                                 "running")


def can_clean(rec: dict[str, Any]) -> bool:
    """Nothing of this request runs, and its fleet or group can launch nothing more."""
    if rec.get("kind") != "create" or rec.get("cleaned"):
        return False
    if rec.get("launch") != "abandoned" and (rec.get("launch") not in ("done", "unknown")
                                            or rec.get("status") == "running"):
        return False
    if is_async(rec) and not rec.get("settled") and rec.get("fleetIds"):
        return False
    return all(i.get("state") == "terminated" for i in rec["instances"].values())


def has_resources(rec: dict[str, Any]) -> bool:
    return bool(rec.get("fleetIds") or rec.get("launchTemplateId")
                or rec.get("launchTemplateName") or rec.get("launchTemplateVersion"))


def cleanup_due(rec: dict[str, Any], now: float) -> bool:
    return now >= (rec.get("cleanup") or {}).get("next", 0)


def cleanup_failed(rec: dict[str, Any], error: str, now: float) -> None:
    """Retry in about a minute, doubling up to an hour; counted, and shown by doctor."""
    info = rec.setdefault("cleanup", {"attempts": 0})
    info["attempts"] = info.get("attempts", 0) + 1
    delay = min(CLEANUP_MAX_RETRY_SEC, CLEANUP_FIRST_RETRY_SEC * 2 ** (info["attempts"] - 1))
    info["next"], info["error"] = now + delay, error


def stuck(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Records whose settle or cleanup keeps failing: request id -> what and why."""
    out = {}
    for rid, rec in data.get("requests", {}).items():
        for what in ("cleanup", "settle"):
            info = rec.get(what) if isinstance(rec.get(what), dict) else None
            if info and info.get("attempts"):
                out[rid] = {"what": what, "attempts": info["attempts"],
                            "error": info.get("error", ""), "next": info.get("next", 0),
                            "resources": [*rec.get("fleetIds", []),
                                          *[x for x in (rec.get("launchTemplateId"),
                                                        rec.get("launchTemplateName")) if x]]}
    return out
