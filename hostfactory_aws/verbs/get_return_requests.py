"""getReturnRequests: the hosts the cloud is taking back, so HostFactory can drain them.

Only what EC2 positively reports counts:
- an instance shutting down, terminated, stopping or stopped that HostFactory did not
  return (gracePeriod 0: it is already going);
- a Spot Instance whose Spot request carries an interruption notice (``marked-for-*``:
  gracePeriod = what is left of EC2's 120 s) or says EC2 already took it (gracePeriod 0).
A failed listing is an error, never a list of reclaimed hosts; neither is a partial one
(instances listed but their Spot requests not): the call fails and says so.

The same sweep of this provider's tagged instances answers the held machines and feeds
the reconcile step (settle and cleanup retries, orphans: see reconcile.py), so the whole
call costs one paginated DescribeInstances (plus one
per 200 held machines that lack our tag) and one DescribeSpotInstanceRequests per 200 held
Spot Instances.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from hostfactory_aws import inputs, orphans, reconcile, records, state
from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import instances, spot_notices
from hostfactory_aws.context import Context
from hostfactory_aws.errors import AwsError
from hostfactory_aws.machines import GONE_STATES, host_name, state_of

log = logging.getLogger(__name__)
NOT_REPORTED = "nothing is reported as reclaimed"


def parse_input(data: dict[str, Any]) -> list[dict[str, str]]:
    """The machines HostFactory holds (may be empty), checked, duplicates merged."""
    return inputs.machines(data, required=False)


def _listing_failed(exc: AwsError, what: str) -> AwsError:
    """The same error, saying that the answer would have been partial and so is none."""
    return AwsError(exc.operation, exc.code,
                    f"{exc.aws_message}; {what}: {NOT_REPORTED}", exc.kind)


def state_reason(inst: dict[str, Any]) -> str:
    reason = inst.get("StateReason") or {}
    text = reason.get("Message") or reason.get("Code") or inst.get("StateTransitionReason")
    return f"instance is {state_of(inst)}" + (f" ({text})" if text else "")


def run(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    given = parse_input(data)
    cfg = ctx.config
    lost = not os.path.exists(ctx.state_path)
    snapshot = state.read(ctx.state_path, cfg["STATE_LOCK_TIMEOUT_SEC"])
    # HostFactory may send {}: fall back on what the state says it holds
    held = given or records.live_machines(snapshot)
    try:
        found = instances.sweep(ctx.aws, ctx.provider)
    except AwsError as exc:
        raise _listing_failed(exc, "could not list this provider's instances") from exc
    if lost:  # a lost work dir: what AWS shows is the truth (no extra call)
        snapshot = reconcile.adopt_lost_state(ctx, found)

    by_name = records.names_index(snapshot)
    for iid, inst in found.items():
        for key in (inst.get("PrivateDnsName"), inst.get("PrivateIpAddress")):
            if key:
                by_name.setdefault(key, iid)
    for m in held:
        m["machineId"] = m["machineId"] or by_name.get(m["name"], "")
    ids = sorted({m["machineId"] for m in held if m["machineId"]})
    described = {iid: found[iid] for iid in ids if iid in found}
    untagged = [iid for iid in ids if iid not in found]
    if untagged:  # held but not carrying our tag: still HostFactory's, look them up
        try:
            described.update(instances.lookup(ctx.aws, untagged))
        except AwsError as exc:
            raise _listing_failed(exc, "held machines could not all be listed") from exc

    now = time.time()
    spot_ids = {iid: spot_notices.spot_request_id(inst) for iid, inst in described.items()}
    spot_ids = {iid: sir for iid, sir in spot_ids.items() if sir}
    try:
        spot_requests = spot_notices.describe(ctx.aws, list(spot_ids.values())) if spot_ids else {}
    except AwsError as exc:
        raise _listing_failed(exc, f"the instances were listed but the Spot requests of "
                                   f"{len(spot_ids)} Spot Instances were not") from exc

    returned = records.returned_ids(snapshot)
    out, reasons, notices = [], {}, {}
    for m in held:
        iid = m["machineId"]
        inst = described.get(iid)
        if inst is None:
            continue  # EC2 does not list it: not proof of anything
        if iid in returned or tagmod.from_aws(inst.get("Tags")).get(tagmod.RETURN_ID):
            continue  # HostFactory gave it back itself: not the cloud's doing
        notice = spot_notices.notice(spot_requests.get(spot_ids.get(iid, "")), inst, now)
        gone = state_of(inst) in GONE_STATES
        if notice is None and not gone:
            continue
        grace = notice.grace_period if notice is not None and not gone else 0
        why = "; ".join(x for x in (notice.reason if notice else "",
                                    state_reason(inst) if gone else "") if x)
        out.append({"machine": m["name"] or host_name(inst), "machineId": iid,
                    "gracePeriod": grace})
        reasons[iid] = why
        if notice is not None:
            notices[iid] = inst
    for r in out:
        log.warning("reclaimed by EC2: %s (%s), gracePeriod %ss: %s", r["machineId"],
                    r["machine"], r["gracePeriod"], reasons[r["machineId"]])

    if cfg["AWS_SPOT_TERMINATE_ON_RECLAIM"] and notices:
        ended = _terminate_reclaimed(ctx, notices)
        for r in out:
            if r["machineId"] in ended:
                r["gracePeriod"] = 0

    found_orphans, killed = reconcile.after_sweep(ctx, found, now, held=given or None,
                                                  orphan_pass=True)

    missing = len(ids) - len(described)
    msg = f"{len(out)} of {len(ids)} machines are being taken back by EC2"
    if missing:
        msg += f"; {missing} not listed by EC2, not reported"
        log.warning("getReturnRequests: %d machines not listed by EC2", missing)
    if found_orphans:
        msg += (f"; {len(found_orphans)} orphan instances of this provider"
                + (f", {len(killed)} terminated" if killed else "") + " (see the log)")
    return {"message": msg, "requests": out}


def _terminate_reclaimed(ctx: Context, notices: dict[str, dict[str, Any]]) -> set[str]:
    """AWS_SPOT_TERMINATE_ON_RECLAIM: end interrupted Spot Instances now (ours only).

    A stopped or hibernated Spot Instance still costs its volumes; HostFactory is told of
    it either way, so a failure here is logged, not raised. Returns the ids ended.
    """
    ours = sorted(iid for iid, inst in notices.items()
                  if orphans.is_ours(inst, ctx.provider)
                  and state_of(inst) not in ("terminated", "shutting-down"))
    skipped = sorted(set(notices) - set(ours))
    if skipped:
        log.info("AWS_SPOT_TERMINATE_ON_RECLAIM: not terminating %s (already ending, or "
                 "not tagged %s=%s)", skipped, tagmod.PROVIDER, ctx.provider)
    if not ours:
        return set()
    log.warning("AWS_SPOT_TERMINATE_ON_RECLAIM: terminating %d interrupted Spot Instances: %s",
                len(ours), ours)
    try:
        refused = instances.terminate(ctx.aws, ours)
    except AwsError as exc:
        log.error("AWS_SPOT_TERMINATE_ON_RECLAIM: termination outcome unknown: %s", exc)
        return set()
    for iid, why in refused.items():
        log.error("AWS_SPOT_TERMINATE_ON_RECLAIM: %s: %s", iid, why)
    return set(ours) - set(refused)
