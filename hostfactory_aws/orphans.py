"""Orphans: instances this provider launched that no request accounts for any more.

They come from calls killed at the wrong moment, state files restored from an old backup,
or fleets that launched after HostFactory gave up. They cost money and HostFactory will
never return them, so they are found here, logged by getReturnRequests on every call, and
terminated only when the admin asks (``hostfactory-aws orphans --terminate``) or has set
AWS_ORPHAN_TIMEOUT_MINUTES.

An instance is an orphan when all of these hold:
- it carries ``hostfactory:provider=<this provider>`` (anything else is never touched);
- it is not terminated or shutting down;
- no open create request in the state holds it: not in a record's instances (unless that
  launch was abandoned) and its request-id tag names no such record;
- HostFactory does not hold it (checked only when HostFactory gave its list).
The state is read AFTER the sweep: requestMachines writes its record before it launches, so
any instance the sweep saw is already accounted for in that read.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hostfactory_aws import state
from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import instances
from hostfactory_aws.errors import AwsError
from hostfactory_aws.machines import epoch, state_of

log = logging.getLogger(__name__)
ENDED_STATES = frozenset({"terminated", "shutting-down"})


def open_requests(snapshot: dict[str, Any],
                  now: float | None = None) -> tuple[set[str], set[str]]:
    """(request ids, instance ids) of create records HostFactory can know of.

    Not: launches abandoned after a killed call, and launches nobody has ever polled long
    after any HostFactory action timeout (a requestMachines killed between its last state
    write and printing its answer: HostFactory never got the id, and polls every request).
    """

    from hostfactory_aws.records import IN_FLIGHT_MAX_SEC

    now = time.time() if now is None else now
    rids: set[str] = set()
    iids: set[str] = set()
    for rid, rec in snapshot.get("requests", {}).items():
        if rec.get("kind") != "create" or rec.get("launch") == "abandoned":
            continue
        if rec.get("polled") is False and now - rec.get("createdAt", now) > IN_FLIGHT_MAX_SEC:
            continue
        rids.add(rid)
        iids.update(rec.get("instances", {}))
    return rids, iids


def is_ours(inst: dict[str, Any], provider: str) -> bool:
    return tagmod.from_aws(inst.get("Tags")).get(tagmod.PROVIDER) == provider


def find(found: dict[str, dict[str, Any]], snapshot: dict[str, Any], provider: str,
         now: float, held: list[dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """The orphans among ``found`` (a sweep), oldest first.

    ``held`` is HostFactory's machine list, or None when HostFactory did not give one.
    """
    rids, iids = open_requests(snapshot)
    held_ids = {m.get("machineId") for m in held or [] if m.get("machineId")}
    held_names = {m.get("name") for m in held or [] if m.get("name")}
    out = []
    for iid, inst in found.items():
        if not is_ours(inst, provider) or state_of(inst) in ENDED_STATES:
            continue
        tags = tagmod.from_aws(inst.get("Tags"))
        if iid in iids or tags.get(tagmod.REQUEST_ID) in rids:
            continue
        if iid in held_ids or {inst.get("PrivateDnsName"), inst.get("PrivateIpAddress")} \
                & held_names:
            continue
        launched = epoch(inst.get("LaunchTime"))
        out.append({
            "instanceId": iid,
            "instanceType": inst.get("InstanceType"),
            "state": state_of(inst),
            "launchTime": launched,
            "requestId": tags.get(tagmod.REQUEST_ID),
            "templateId": tags.get(tagmod.TEMPLATE_ID),
            "name": inst.get("PrivateDnsName") or inst.get("PrivateIpAddress") or "",
            "ageSeconds": int(max(0, now - launched)) if launched else 0,
        })
    out.sort(key=lambda r: (r["launchTime"], r["instanceId"]))
    return out


def overdue(orphans: list[dict[str, Any]], timeout_minutes: int) -> list[dict[str, Any]]:
    """Orphans older than the timeout; none when the timeout is 0 (never terminate)."""
    if timeout_minutes <= 0:
        return []
    return [o for o in orphans if o["launchTime"] and o["ageSeconds"] > timeout_minutes * 60]


def terminate(aws: Any, orphans: list[dict[str, Any]], found: dict[str, dict[str, Any]],
              provider: str) -> tuple[list[str], dict[str, str]]:
    """Terminate orphans, re-checking the provider tag on each; (terminated, refused)."""
    ids = [o["instanceId"] for o in orphans
           if o["instanceId"] in found and is_ours(found[o["instanceId"]], provider)]
    if not ids:
        return [], {}
    refused = instances.terminate(aws, ids)
    return [i for i in ids if i not in refused], refused


def handle(ctx: Any, found: dict[str, dict[str, Any]], held: list[dict[str, str]] | None,
           now: float) -> tuple[list[dict[str, Any]], list[str]]:
    """getReturnRequests' orphan pass: log every orphan, terminate the overdue ones.

    Terminates only when HostFactory gave its list (``held`` not None) and
    AWS_ORPHAN_TIMEOUT_MINUTES > 0. Never fails the call: orphans are housekeeping, the
    reclaim answer is what HostFactory is waiting for. Returns (orphans, terminated ids).
    """
    cfg = ctx.config
    snapshot = state.read(ctx.state_path, cfg["STATE_LOCK_TIMEOUT_SEC"])
    found_orphans = find(found, snapshot, ctx.provider, now, held)
    if not found_orphans:
        return [], []
    timeout = int(cfg.get("AWS_ORPHAN_TIMEOUT_MINUTES", 0))
    log.warning("%d orphan instances (tagged %s=%s, held by no request): %s",
                len(found_orphans), tagmod.PROVIDER, ctx.provider,
                ", ".join(f"{o['instanceId']} ({o['state']}, {age_text(o['ageSeconds'])}, "
                          f"request {o['requestId'] or '-'})" for o in found_orphans))
    doomed = overdue(found_orphans, timeout) if held is not None else []
    if not doomed:
        return found_orphans, []
    log.warning("terminating %d orphans older than AWS_ORPHAN_TIMEOUT_MINUTES=%d: %s",
                len(doomed), timeout, [o["instanceId"] for o in doomed])
    try:
        done, refused = terminate(ctx.aws, doomed, found, ctx.provider)
    except AwsError as exc:
        log.error("could not terminate orphans (will retry next call): %s", exc)
        return found_orphans, []
    for iid, why in refused.items():
        log.error("orphan %s: %s", iid, why)
    return found_orphans, done


def age_text(seconds: int) -> str:
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"
