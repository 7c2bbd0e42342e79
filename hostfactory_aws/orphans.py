"""Orphans: instances this provider launched that no request accounts for any more.

They come from calls killed at the wrong moment, state files restored from an old backup,
or fleets that launched after HostFactory gave up. They cost money and HostFactory will
never return them, so they are found here, logged by getReturnRequests on every call, and
terminated only when the admin asks (``hostfactory-aws orphans --terminate``) or has set
AWS_ORPHAN_TIMEOUT_MINUTES.

An instance is an orphan when it carries ``hostfactory:provider=<this provider>``
(anything else is never touched), is not ending, HostFactory does not hold it (checked
only when HostFactory gave its list), and one of these holds (``reason``):
- no record accounts for it (a lost or restored state file, a launch wound up by the
  reaper);
- it came under its request after HostFactory had the final answer (a maintain fleet's or
  group's replacement, a late fill), or beyond what the request asked (a copied host, an
  overshoot), or the final answer never listed it: HostFactory can never get it;
- its launch is in doubt (the reaper could not prove the answer unwritten): a *candidate*,
  listed but never terminated automatically.
Nothing is terminated on its tags alone (anyone allowed to tag can forge them): ``terminate``
also wants the mark its launch left (cloud/provenance.py: the ClientToken, the group or the
fleet made for its request); one without it stays a candidate.
A host of a request whose id was answered and that HostFactory may still be given (polled
or not) is never an orphan. The state is read AFTER the sweep: requestMachines writes its
record before it launches, so any instance the sweep saw is already accounted for.
"""

from __future__ import annotations

import logging
from typing import Any

from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import instances, provenance
from hostfactory_aws.machines import epoch, state_of

log = logging.getLogger(__name__)
ENDED_STATES = frozenset({"terminated", "shutting-down"})


def why_orphan(iid: str, rec: dict[str, Any] | None, known: set[str]) -> tuple[str, bool] | None:
    """(reason, may be terminated automatically) for one live tagged instance, or None."""
    if rec is None or rec.get("kind") != "create":
        return (None if iid in known else ("no request record", True))
    if rec.get("launch") == "abandoned":
        return "its launch was never answered", True
    if rec.get("rebuilt"):  # the state was lost: only HostFactory's own list can tell
        return "no request record (rebuilt from tags after the state was lost)", True
    delivered = rec.get("delivered")
    if iid in rec.get("instances", {}):
        info = rec["instances"][iid]
        if delivered is not None and iid not in delivered and not info.get("returnId"):
            return "never given to HostFactory", True
        return None
    if iid in rec.get("extra", {}):
        return f"{rec['extra'][iid].get('why', 'extra')}: never given to HostFactory", True
    if delivered is not None:
        return "late: came after HostFactory's final answer", True
    if rec.get("doubt"):
        return "candidate: " + rec["doubt"], False
    return None  # still on its way to HostFactory


def is_ours(inst: dict[str, Any], provider: str) -> bool:
    return tagmod.from_aws(inst.get("Tags")).get(tagmod.PROVIDER) == provider


def find(found: dict[str, dict[str, Any]], snapshot: dict[str, Any], provider: str,
         now: float, held: list[dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """The orphans among ``found`` (a sweep), oldest first.

    ``held`` is HostFactory's machine list, or None when HostFactory did not give one.
    """
    reqs = snapshot.get("requests", {})
    known = {iid for rec in reqs.values() if rec.get("kind") == "create"
             and rec.get("launch") != "abandoned" for iid in rec.get("instances", {})}
    held_ids = {m.get("machineId") for m in held or [] if m.get("machineId")}
    held_names = {m.get("name") for m in held or [] if m.get("name")}
    out = []
    for iid, inst in found.items():
        if not is_ours(inst, provider) or state_of(inst) in ENDED_STATES:
            continue
        tags = tagmod.from_aws(inst.get("Tags"))
        if iid in held_ids or {inst.get("PrivateDnsName"), inst.get("PrivateIpAddress")} \
                & held_names:
            continue
        verdict = why_orphan(iid, reqs.get(tags.get(tagmod.REQUEST_ID, "")), known)
        if verdict is None:
            continue
        launched = epoch(inst.get("LaunchTime"))
        reason, can_terminate = verdict
        if can_terminate and provenance.mark(inst) is None:
            reason = f"candidate: {reason}; only its tags say it is ours"
            can_terminate = False
        out.append({
            "instanceId": iid,
            "instanceType": inst.get("InstanceType"),
            "state": state_of(inst),
            "launchTime": launched,
            "requestId": tags.get(tagmod.REQUEST_ID),
            "templateId": tags.get(tagmod.TEMPLATE_ID),
            "name": inst.get("PrivateDnsName") or inst.get("PrivateIpAddress") or "",
            "ageSeconds": int(max(0, now - launched)) if launched else 0,
            "reason": reason,
            "canTerminate": can_terminate,
        })
    out.sort(key=lambda r: (r["launchTime"], r["instanceId"]))
    return out


def overdue(orphans: list[dict[str, Any]], timeout_minutes: int) -> list[dict[str, Any]]:
    """Terminable orphans older than the timeout; none when the timeout is 0 (never)."""
    if timeout_minutes <= 0:
        return []
    return [o for o in orphans if o["launchTime"] and o.get("canTerminate", True)
            and o["ageSeconds"] > timeout_minutes * 60]


def terminate(aws: Any, orphans: list[dict[str, Any]], found: dict[str, dict[str, Any]],
              provider: str) -> tuple[list[str], dict[str, str]]:
    """Terminate orphans, re-checking each: the provider tag, then the mark its launch left
    (an id without one is kept and given in ``refused`` with why); (terminated, refused)."""
    ids = [o["instanceId"] for o in orphans
           if o["instanceId"] in found and is_ours(found[o["instanceId"]], provider)]
    kept = provenance.unproven(aws, {iid: found[iid] for iid in ids}) if ids else {}
    ids = [iid for iid in ids if iid not in kept]
    kept = {iid: f"kept: {why}" for iid, why in kept.items()}
    if not ids:
        return [], kept
    refused = instances.terminate(aws, ids)
    return [i for i in ids if i not in refused], {**kept, **refused}


def age_text(seconds: int) -> str:
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"
