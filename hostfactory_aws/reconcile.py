"""What every AWS-touching verb does to the world after its sweep, in one place.

The verbs build HostFactory's answers; this module owns the consequences, on the sweep the
verb already made (no per-request calls):

- reap: a launch whose answer was provably never written (see answers.py) has its hosts
  terminated and its fleet, group and launch template released; a killed return is rolled
  back (HostFactory still holds those hosts). In doubt, nothing is ended: the record is
  marked and its hosts are listed as orphan candidates.
- learn: every create record takes in what the sweep shows (new hosts up to what it asked,
  hosts beyond that or after the final answer as ``extra``, fleet ids from EC2's tags, hosts
  no sweep lists past the grace as gone).
- settle, retried for every ended record not yet settled (not only those HostFactory asks
  about): its fleet or group launches nothing more and never scales in a held host.
- cleanup, retried with backoff (1 min doubling to 1 h) and counted; a record is pruned
  only after its cleanup succeeded.
- orphans (getReturnRequests): listed every call, the overdue terminable ones ended when
  AWS_ORPHAN_TIMEOUT_MINUTES is set; never a host of a request whose id was answered.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hostfactory_aws import answers, machines, orphans, records, state
from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import apis, instances
from hostfactory_aws.context import Context
from hostfactory_aws.errors import AwsError
from hostfactory_aws.machines import COMPLETE_WITH_ERROR, RUNNING, state_of

log = logging.getLogger(__name__)
ENDING = ("terminated", "shutting-down")
SETTLE_RETRIES_AT_ONCE = 3


def _lock_timeout(ctx: Context) -> float:
    return ctx.config["STATE_LOCK_TIMEOUT_SEC"]


def reap(ctx: Context, snapshot: dict[str, Any],
         found: dict[str, dict[str, Any]] | None = None,
         note_answered: bool = True) -> dict[str, Any]:
    """Wind up records whose call is over without a written answer; returns the state now.

    Costs nothing while no record lacks its answer mark (the usual case): the journal is
    read only when a call holding such a record is over. ``note_answered`` False leaves
    the marks of answered records to a later call (requestMachines, whose refused input
    must change nothing).
    """
    path = ctx.state_path
    cands = [rid for rid, rec in snapshot["requests"].items() if records.reap_candidate(rec)]
    over = {rid: answers.call_over(path, rid) for rid in cands}
    # No lock file at all: unlinked by a cleaner, or never there (a restored state). Its
    # call may still be at work until the longest a call can last has passed: until then
    # it keeps its reservation, never made a doubt (which would let others pass maxNumber).
    started = time.time()
    done = [rid for rid in cands if over[rid] is True or (
        over[rid] is None and started - snapshot["requests"][rid].get("createdAt", 0)
        >= records.CALL_MAX_SEC)]
    if not done:
        return snapshot
    journal = answers.journaled(path)
    answered = [rid for rid in done if rid in journal[1]]
    dead = [rid for rid in done if rid not in answered and answers.never_answered(
        snapshot["requests"][rid], journal, over[rid], rid)]
    doubt = [rid for rid in done if rid not in answered and rid not in dead
             and not snapshot["requests"][rid].get("doubt")]
    if not note_answered:
        answered = []
    if not (answered or dead or doubt):
        return snapshot
    creates = [rid for rid in dead if snapshot["requests"][rid]["kind"] == "create"]
    if creates:
        if found is None:
            found = instances.sweep(ctx.aws, ctx.provider)
        _end_unanswered(ctx, creates, found)
    now = time.time()
    with state.update(path, _lock_timeout(ctx)) as st:
        reqs = st["requests"]
        for rid in answered:
            if rid in reqs:
                reqs[rid]["answered"] = True
        for rid in doubt:
            if rid in reqs and not reqs[rid].get("doubt"):
                reqs[rid]["doubt"] = ("its call ended and the answer journal cannot prove "
                                      "HostFactory never got the id (restored or foreign "
                                      "state, or a lost journal): kept")
                log.warning("%s: %s", rid, reqs[rid]["doubt"])
        for rid in dead:
            rec = reqs.get(rid)
            if rec is None or not records.reap_candidate(rec):
                continue
            if rec["kind"] == "create":
                _abandon(rec, now)
            else:
                _roll_back(st, rid, rec)
            log.warning("%s: wound up a record whose call ended before it answered", rid)
    for rid in dead:
        answers.release(path, rid)
    return state.read(path, _lock_timeout(ctx))


def _end_unanswered(ctx: Context, rids: list[str], found: dict[str, dict[str, Any]]) -> None:
    """Terminate the live hosts of launches HostFactory provably never heard of."""
    doomed = sorted(iid for iid, inst in found.items()
                    if tagmod.from_aws(inst.get("Tags")).get(tagmod.REQUEST_ID) in rids
                    and state_of(inst) not in ENDING)
    if doomed:
        log.warning("terminating %d instances of launches never answered %s: %s",
                    len(doomed), rids, doomed)
        instances.terminate(ctx.aws, doomed)


def _abandon(rec: dict[str, Any], now: float) -> None:
    rec["launch"] = "abandoned"
    rec["status"] = COMPLETE_WITH_ERROR
    rec["errors"] = ["requestMachines ended before it answered; the instances it launched "
                     "were terminated"]
    for info in rec["instances"].values():
        info["state"] = "terminated"
    rec["abandonedAt"] = now


def _roll_back(st: dict[str, Any], rid: str, rec: dict[str, Any]) -> None:
    for iid, info in rec["machines"].items():
        owner = st["requests"].get(info.get("requestId") or "")
        mine = (owner or {}).get("instances", {}).get(iid)
        if mine and mine.get("returnId") == rid:
            mine["returnId"] = None
    del st["requests"][rid]


def after_sweep(ctx: Context, found: dict[str, dict[str, Any]], now: float,
                asked: dict[str, tuple[dict[str, Any], dict[str, Any]]] | None = None,
                held: list[dict[str, str]] | None = None,
                orphan_pass: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """The reconcile step. ``asked``: request id -> (record, HostFactory's answer) of a
    getRequestStatus; ``held``: HostFactory's machine list of a getReturnRequests.
    Returns (orphans, orphans terminated) when ``orphan_pass``."""
    asked = asked or {}
    _end_overdue_pending(ctx, asked, found, now)
    snapshot = state.read(ctx.state_path, _lock_timeout(ctx))
    _retry_left_behind(ctx, snapshot, now)
    _end_unanswered(ctx, [rid for rid, rec in snapshot["requests"].items()
                          if rec.get("launch") == "abandoned"], found)
    _find_lost_fleets(ctx, snapshot, now)
    to_settle = _learn(ctx, found, asked, now)
    outcome: dict[str, dict[str, Any]] = {}
    for rid, (rec, running) in to_settle.items():
        try:
            apis.module_for(rec["api"]).settle(ctx, rec, running)
            outcome[rid] = {"settled": True, "target": rec.get("target")}
        except AwsError as exc:
            log.warning("%s: could not settle %s, will retry: %s", rid, rec.get("fleetIds"), exc)
            outcome[rid] = {"settleError": f"{exc.code}: {exc.aws_message}"}
    snapshot = state.read(ctx.state_path, _lock_timeout(ctx))
    for rid, rec in snapshot["requests"].items():
        if rid in outcome and outcome[rid].get("settled"):
            rec = {**rec, "settled": True}
        if (records.can_clean(rec) and records.has_resources(rec)
                and records.cleanup_due(rec, now)):
            try:
                apis.module_for(rec["api"]).cleanup(ctx, {**rec, "requestId": rid})
                outcome.setdefault(rid, {})["cleaned"] = True
            except AwsError as exc:
                log.warning("%s: cleanup of %s failed, will retry: %s", rid,
                            rec.get("fleetIds") or rec.get("launchTemplateId"), exc)
                outcome.setdefault(rid, {})["cleanupError"] = f"{exc.code}: {exc.aws_message}"
    if outcome:
        _write_outcome(ctx, outcome, now)
    if not orphan_pass:
        return [], []
    return handle_orphans(ctx, found, held, now)


def _end_overdue_pending(ctx: Context, asked: dict[str, tuple[dict[str, Any], dict[str, Any]]],
                         found: dict[str, dict[str, Any]], now: float) -> None:
    overdue = sorted(
        iid for rec, answer in asked.values() if rec.get("kind") == "create"
        for iid in (m["machineId"] for m in answer["machines"])
        if iid in found and machines.overdue_pending(
            found[iid], now, pending_limit(ctx, rec, found[iid].get("InstanceType"))))
    if overdue:
        log.warning("terminating %d instances pending past their timeout: %s", len(overdue),
                    overdue)
        instances.terminate(ctx.aws, overdue)


# .metal instances take 10+ minutes to boot: the default never ends them sooner than this.
METAL_PENDING_MIN_SEC = 1800


def pending_limit(ctx: Context, rec: dict[str, Any], itype: str | None) -> float:
    """The template's own pending timeout, else the config's (at least 30 min for .metal)."""
    if rec.get("pendingTimeoutSec"):
        return float(rec["pendingTimeoutSec"])
    default = float(ctx.config["AWS_INSTANCE_PENDING_TIMEOUT_SEC"])
    return max(default, METAL_PENDING_MIN_SEC) if ".metal" in (itype or "") else default


def _learn(ctx: Context, found: dict[str, dict[str, Any]],
           asked: dict[str, tuple[dict[str, Any], dict[str, Any]]],
           now: float) -> dict[str, tuple[dict[str, Any], float]]:
    """Write what this sweep taught every record; returns the records to settle now."""
    to_settle = {}
    with state.update(ctx.state_path, _lock_timeout(ctx)) as st:
        reqs = st["requests"]
        for rid, (rec, _answer) in asked.items():
            if rid not in reqs and rec.get("rebuilt"):
                reqs[rid] = rec  # adopt what the tags told us
        index = records.request_index(found)
        for rid, cur in reqs.items():  # first what the sweep shows, as the answers saw it
            records.learn(cur, rid, found, now, index)
            if cur.get("launch") == "abandoned":
                _learn_fleet_ids(cur, rid, found)
        for rid, (_rec, answer) in asked.items():  # then what HostFactory was told
            cur = reqs.get(rid)
            if cur is None:
                continue
            cur["status"] = answer["status"]
            if cur["kind"] == "create":
                cur["polled"] = cur["answered"] = True  # HostFactory has this id
                if answer["status"] != RUNNING and cur.get("delivered") is None:
                    cur["delivered"] = sorted(m["machineId"] for m in answer["machines"])
            elif answer["status"] != RUNNING and not cur["endedAt"]:
                cur["endedAt"] = now
        for rid, cur in reqs.items():
            if records.needs_settle(cur) and _due(cur.get("settle"), now):
                to_settle[rid] = (dict(cur), records.running_units(cur, found))
            if records.can_clean(cur) and not records.has_resources(cur):
                cur["cleaned"] = True
                cur["endedAt"] = cur.get("endedAt") or now
        state.prune(st, now, ctx.config["REQUEST_RETENTION_HOURS"])
    return to_settle


def _learn_fleet_ids(rec: dict[str, Any], rid: str, found: dict[str, dict[str, Any]]) -> None:
    """A launch wound up before its reply named its fleet: EC2's tags on its hosts do."""
    for inst in found.values():
        tags = tagmod.from_aws(inst.get("Tags"))
        if tags.get(tagmod.REQUEST_ID) != rid:
            continue
        for key in tagmod.FLEET_ID_TAGS:
            if tags.get(key) and tags[key] not in rec["fleetIds"]:
                rec["fleetIds"].append(tags[key])


def lost_fleet(rec: dict[str, Any]) -> bool:
    """A fleet launch whose reply was lost (abandoned, outcome unknown, or in doubt) and
    whose fleet no host's tag has named yet: its fleet is looked for by its own tags, once."""
    return (rec.get("kind") == "create" and rec.get("api") in ("EC2Fleet", "SpotFleet")
            and rec.get("fleetType") != "instant" and not rec.get("fleetIds")
            and not rec.get("cleaned") and not rec.get("fleetSearchedAt")
            and (rec.get("launch") in ("abandoned", "unknown") or bool(rec.get("doubt"))))


def _find_lost_fleets(ctx: Context, snapshot: dict[str, Any], now: float) -> None:
    """One listing per fleet API, only while a record needs it (lost_fleet): a fleet
    launched with no host yet, or whose hosts are gone, is still settled and deleted."""
    lost = {rid: rec["api"] for rid, rec in snapshot["requests"].items() if lost_fleet(rec)}
    if not lost:
        return
    found: dict[str, list[dict[str, Any]]] = {}
    for api in sorted(set(lost.values())):
        try:
            for res in apis.module_for(api).owned(ctx):
                if lost.get(res["requestId"]) == api:
                    found.setdefault(res["requestId"], []).append(res)
        except AwsError as exc:
            log.warning("could not list %s fleets to find those of %s, will retry: %s", api,
                        sorted(r for r, a in lost.items() if a == api), exc)
            lost = {r: a for r, a in lost.items() if a != api}
    with state.update(ctx.state_path, _lock_timeout(ctx)) as st:
        for rid in lost:
            cur = st["requests"].get(rid)
            if cur is None or not lost_fleet(cur):
                continue
            cur["fleetSearchedAt"] = now
            for res in found.get(rid, []):
                if res["id"] not in cur["fleetIds"]:
                    cur["fleetIds"].append(res["id"])
                    log.warning("%s: its launch's reply was lost; found its fleet %s by its "
                                "tags", rid, res["id"])


def _due(info: dict[str, Any] | None, now: float) -> bool:
    return now >= (info or {}).get("next", 0)


def _write_outcome(ctx: Context, outcome: dict[str, dict[str, Any]], now: float) -> None:
    with state.update(ctx.state_path, _lock_timeout(ctx)) as st:
        for rid, out in outcome.items():
            cur = st["requests"].get(rid)
            if cur is None:
                continue
            if out.get("settled"):
                cur["settled"], cur["target"] = True, out["target"]
                cur.pop("settle", None)
            elif "settleError" in out:
                info = cur.setdefault("settle", {"attempts": 0})
                info["attempts"] = info.get("attempts", 0) + 1
                # a fleet still launching costs money: the next calls retry at once,
                # then back off like cleanup
                extra = info["attempts"] - SETTLE_RETRIES_AT_ONCE
                info["next"] = now if extra < 1 else now + min(
                    records.CLEANUP_MAX_RETRY_SEC, records.CLEANUP_FIRST_RETRY_SEC * 2 ** (
                        extra - 1))
                info["error"] = out["settleError"]
            if out.get("cleaned"):
                cur["cleaned"] = True
                cur["endedAt"] = cur.get("endedAt") or now
                cur.pop("cleanup", None)
            elif "cleanupError" in out:
                records.cleanup_failed(cur, out["cleanupError"], now)


def handle_orphans(ctx: Context, found: dict[str, dict[str, Any]],
                   held: list[dict[str, str]] | None,
                   now: float) -> tuple[list[dict[str, Any]], list[str]]:
    """getReturnRequests' orphan pass: log every orphan, terminate the overdue ones.

    Terminates only when HostFactory gave its list (``held`` not None) and
    AWS_ORPHAN_TIMEOUT_MINUTES > 0, and only orphans that can never be HostFactory's (see
    orphans.find). Never fails the call. Returns (orphans, terminated ids).
    """
    cfg = ctx.config
    snapshot = state.read(ctx.state_path, _lock_timeout(ctx))
    found_orphans = orphans.find(found, snapshot, ctx.provider, now, held)
    if not found_orphans:
        return [], []
    timeout = int(cfg.get("AWS_ORPHAN_TIMEOUT_MINUTES", 0))
    log.warning("%d orphan instances (tagged %s=%s, held by no request): %s",
                len(found_orphans), tagmod.PROVIDER, ctx.provider,
                ", ".join(f"{o['instanceId']} ({o['state']}, {orphans.age_text(o['ageSeconds'])}"
                          f", request {o['requestId'] or '-'}: {o['reason']})"
                          for o in found_orphans))
    doomed = orphans.overdue(found_orphans, timeout) if held is not None else []
    if not doomed:
        return found_orphans, []
    log.warning("terminating %d orphans older than AWS_ORPHAN_TIMEOUT_MINUTES=%d: %s",
                len(doomed), timeout, [o["instanceId"] for o in doomed])
    try:
        done, refused = orphans.terminate(ctx.aws, doomed, found, ctx.provider)
    except AwsError as exc:
        log.error("could not terminate orphans (will retry next call): %s", exc)
        return found_orphans, []
    for iid, why in refused.items():
        (log.warning if why.startswith("kept:") else log.error)("orphan %s: %s", iid, why)
    return found_orphans, done


def rebuild(rid: str, found: dict[str, dict[str, Any]], now: float,
            ctx: Context | None = None) -> dict[str, Any] | None:
    """A record for a request the state file lost, from the instances' tags."""
    key = tagmod.REQUEST_ID if rid.startswith("req-") else tagmod.RETURN_ID
    mine = {iid: inst for iid, inst in found.items()
            if tagmod.from_aws(inst.get("Tags")).get(key) == rid}
    if not mine:
        return None
    first = min(machines.epoch(i.get("LaunchTime")) for i in mine.values())
    if key == tagmod.RETURN_ID:
        rec = records.new_return(first)
        rec["machines"] = {iid: {"name": machines.host_name(i), "refused": "",
                                 "requestId": tagmod.from_aws(i.get("Tags")).get(tagmod.REQUEST_ID)}
                           for iid, i in mine.items()}
        rec["createdAt"] = 0  # unknown: old enough for vanished machines to count as gone
        rec["phase"] = "done"
        rec["rebuilt"] = rec["answered"] = True
        return rec
    any_tags = tagmod.from_aws(next(iter(mine.values())).get("Tags"))
    rec = records.new_create(any_tags.get(tagmod.TEMPLATE_ID, "?"), len(mine), "?", first)
    rec["launch"] = "done"
    rec["instances"] = {iid: {"units": 1.0, "name": machines.host_name(i),
                              "type": i.get("InstanceType"), "state": machines.state_of(i),
                              "returnId": tagmod.from_aws(i.get("Tags")).get(tagmod.RETURN_ID)}
                        for iid, i in mine.items()}
    if ctx is not None:
        _what_made_it(ctx, rec, rid, mine)
    rec["rebuilt"] = True
    rec["answered"] = True  # HostFactory got this id from a plugin that then lost its state
    log.warning("%s: not in the state file; rebuilt from %d tagged instances", rid, len(mine))
    return rec


def _what_made_it(ctx: Context, rec: dict[str, Any], rid: str,
                  mine: dict[str, dict[str, Any]]) -> None:
    """From the template and EC2's own tags: the API, and the group, fleet and launch
    template names to release (derived from the request id, as requestMachines made them)."""
    t = _template_or_none(ctx, rec["templateId"])
    if t is None:
        return  # the template is gone: only the hosts are known
    rec.update(api=t["providerApi"], fleetType=t["fleetType"], weights=t["vmTypes"],
               status="complete")  # HostFactory had its answer before the state was lost
    for iid, info in rec["instances"].items():
        info["units"] = apis.weights_units(t["vmTypes"], mine[iid].get("InstanceType"))
    rec["units"] = rec["target"] = max(1, int(sum(i["units"] for i in rec["instances"].values())))
    if t["providerApi"] != "RunInstances" and not t.get("launchTemplateId"):
        rec["launchTemplateName"] = f"hf-{rid}"
    if t["providerApi"] == "ASG":
        rec["fleetIds"] = [f"hf-{rid}"]
    for inst in mine.values():
        for key in tagmod.FLEET_ID_TAGS:
            fid = tagmod.from_aws(inst.get("Tags")).get(key)
            if fid and fid not in rec["fleetIds"]:
                rec["fleetIds"].append(fid)


def adopt_lost_state(ctx: Context,
                     found: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """No state file (a lost or wiped work dir, a failover): rebuild what AWS says runs.

    Every request the sweep shows hosts of (live, returned or ended) is rebuilt, so
    availableNumber counts what runs under each template; so is every request whose fleet,
    Spot Fleet request, group or launch template is still there though none of its hosts is
    listed (all returned long ago, or none launched): reconcile then settles and cleans up
    what earlier requests left. Costs one sweep when the verb has none (getAvailable-
    Templates) and one listing per resource family, once: the state file exists afterwards.
    A failed sweep is logged and the empty state used; a failed listing is retried by the
    next calls that reconcile (see after_sweep).
    """
    if found is None:
        try:
            found = instances.sweep(ctx.aws, ctx.provider)
        except AwsError as exc:
            log.error("state file %s is missing and EC2 could not be listed; availableNumber "
                      "may overstate what is free: %s", ctx.state_path, exc)
            return state.read(ctx.state_path, _lock_timeout(ctx))
    now = time.time()
    left = _left_behind(ctx)
    seen = {tagmod.from_aws(inst.get("Tags")).get(tagmod.REQUEST_ID) for inst in found.values()}
    with state.update(ctx.state_path, _lock_timeout(ctx)) as st:
        for rid in sorted(r for r in seen if r and r.startswith("req-")):
            if rid not in st["requests"]:
                rec = rebuild(rid, found, now, ctx)
                if rec is not None:
                    st["requests"][rid] = rec
        if left is None:
            st[LEFT_BEHIND_PENDING] = True
        else:
            adopt_resources(st["requests"], left, now, ctx)
        st["rebuiltFromAwsAt"] = now
        return st


# State key: the listing of fleets, groups and templates of a lost state file still to do.
LEFT_BEHIND_PENDING = "leftBehindPending"


def _left_behind(ctx: Context) -> list[dict[str, Any]] | None:
    from hostfactory_aws.errors import HostFactoryError

    try:
        wanted = apis.families(ctx.templates)
    except HostFactoryError:  # no readable templates: look for everything
        wanted = {"LaunchTemplate", *apis.FLEET_APIS}
    try:
        return apis.left_behind(ctx, wanted)
    except AwsError as exc:
        log.error("state file lost: could not list this provider's fleets, groups and launch "
                  "templates (the next calls retry): %s", exc)
        return None


def _retry_left_behind(ctx: Context, snapshot: dict[str, Any], now: float) -> None:
    """A lost state file's listing that failed: retried until it worked, then never."""
    if not snapshot.get(LEFT_BEHIND_PENDING):
        return
    left = _left_behind(ctx)
    if left is None:
        return
    with state.update(ctx.state_path, _lock_timeout(ctx)) as st:
        adopt_resources(st["requests"], left, now, ctx)
        st.pop(LEFT_BEHIND_PENDING, None)


def adopt_resources(reqs: dict[str, Any], left: list[dict[str, Any]], now: float,
                    ctx: Context | None = None) -> None:
    """Records for the requests these Resources (apis.left_behind) belong to, in place.

    A request with no record gets one that has ended (HostFactory had its answer before the
    state was lost) and delivered nothing: it holds nothing against maxNumber, its fleet or
    group is settled and then deleted with its template, and a host it launches later is
    an orphan, never a machine HostFactory was given. A record rebuilt from hosts learns the
    ids its hosts' tags did not give. Records the plugin wrote itself are left alone.
    """
    by_request: dict[str, list[dict[str, Any]]] = {}
    for res in left:
        by_request.setdefault(res["requestId"], []).append(res)
    for rid, mine in sorted(by_request.items()):
        rec = reqs.get(rid)
        if rec is None:
            rec = reqs[rid] = _from_resources(rid, mine, now, ctx)
            log.warning("%s: not in the state file and no host of it listed; rebuilt to "
                        "release %s", rid, ", ".join(r["id"] for r in mine))
        elif not rec.get("rebuilt") or rec.get("kind") != "create":
            continue
        records.own_resources(rec, mine)


def _from_resources(rid: str, mine: list[dict[str, Any]], now: float,
                    ctx: Context | None) -> dict[str, Any]:
    tid = mine[0]["templateId"]
    t = _template_or_none(ctx, tid)
    api = (t or {}).get("providerApi", "RunInstances")
    rec = records.new_create(tid, 0, api, min(r["createdAt"] for r in mine) or now)
    rec.update(launch="done", status="complete", delivered=[], target=0, rebuilt=True,
               answered=True, polled=True, fleetType=(t or {}).get("fleetType"),
               weights=(t or {}).get("vmTypes") or {})
    return rec


def _template_or_none(ctx: Context | None, tid: str) -> dict[str, Any] | None:
    from hostfactory_aws.errors import HostFactoryError

    if ctx is None:
        return None
    try:
        return ctx.template(tid)
    except HostFactoryError:
        return None  # the template is gone: what AWS says is all there is
