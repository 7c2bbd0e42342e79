"""Finishing what a killed call left half done.

A requestMachines or requestReturnMachines killed mid-flight leaves an in-flight record whose
id HostFactory never received. For a launch, nobody will ever poll or return its machines,
so they are terminated (found by their request-id tag): nothing is lost and nothing is
doubled when HostFactory asks again. For a return, the record is rolled back: HostFactory
still holds those machines and will return them again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hostfactory_aws import records, state
from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import instances
from hostfactory_aws.context import Context
from hostfactory_aws.machines import COMPLETE_WITH_ERROR, state_of

log = logging.getLogger(__name__)


def stale_ids(data: dict[str, Any], now: float) -> list[str]:
    return [rid for rid, rec in data["requests"].items() if records.stale(rec, now)]


def reap(ctx: Context, data: dict[str, Any],
         found: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Settle stale in-flight records seen in ``data``; returns the ids settled."""
    now = time.time()
    ids = stale_ids(data, now)
    if not ids:
        return []
    creates = [rid for rid in ids if data["requests"][rid]["kind"] == "create"]
    if creates:
        if found is None:
            found = instances.sweep(ctx.aws, ctx.provider)
        doomed = sorted(iid for iid, inst in found.items()
                        if tagmod.from_aws(inst.get("Tags")).get(tagmod.REQUEST_ID) in creates
                        and state_of(inst) not in ("terminated", "shutting-down"))
        if doomed:
            log.warning("terminating %d instances of killed requestMachines calls %s: %s",
                        len(doomed), creates, doomed)
            instances.terminate(ctx.aws, doomed)
    with state.update(ctx.state_path, ctx.config["STATE_LOCK_TIMEOUT_SEC"]) as st:
        for rid in ids:
            rec = st["requests"].get(rid)
            if rec is None or not records.stale(rec, now):
                continue
            if rec["kind"] == "create":
                rec["launch"] = "abandoned"
                rec["status"] = COMPLETE_WITH_ERROR
                rec["errors"] = ["requestMachines was killed before it answered; the "
                                 "instances it launched were terminated"]
                rec["endedAt"] = now
                for info in rec["instances"].values():
                    info["state"] = "terminated"
            else:
                for iid, info in rec["machines"].items():
                    owner = st["requests"].get(info.get("requestId") or "")
                    mine = (owner or {}).get("instances", {}).get(iid)
                    if mine and mine.get("returnId") == rid:
                        mine["returnId"] = None
                del st["requests"][rid]
            log.warning("%s: settled a record left by a killed call", rid)
    return ids
