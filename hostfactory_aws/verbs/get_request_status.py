"""getRequestStatus: one tag sweep of EC2 answers every request asked, create or return.

The state file says which machines a request launched; the sweep says what they are now
(and finds what asynchronous fleets and groups launched since, by their request-id tag).
Fleets and groups still working are described once per API family, batched. Requests the
state does not know (lost work dir, failover) are answered from the instances' tags.
Instances pending past the timeout are terminated.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hostfactory_aws import inputs, machines, reconcile, records, state
from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import apis, instances
from hostfactory_aws.context import Context
from hostfactory_aws.errors import AwsError
from hostfactory_aws.machines import COMPLETE_WITH_ERROR, EXECUTING, FAIL, RUNNING, SUCCEED

log = logging.getLogger(__name__)
# How long a launch whose outcome is unknown may show no instance before we call it failed.
UNKNOWN_LAUNCH_GRACE_SEC = records.UNKNOWN_LAUNCH_HOLD_SEC
# An instance we launched that EC2 does not list yet (eventual consistency) is not a failure.
NOT_LISTED_GRACE_SEC = 600


def parse_input(data: dict[str, Any]) -> list[str]:
    """The request ids asked about, checked, each once (first occurrence first)."""
    ids = []
    for i, item in enumerate(inputs.items(data, "requests", single_ok=True)):
        rid = item.get("requestId") if isinstance(item, dict) else None
        ids.append(inputs.request_id(rid, f"requests[{i}].requestId"))
    return list(dict.fromkeys(ids))


def is_async(rec: dict[str, Any]) -> bool:
    """Fleets and groups that launch after the call returned."""
    return rec.get("api") in ("SpotFleet", "ASG") or rec.get("fleetType") in ("request",
                                                                              "maintain")


def run(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    ids = parse_input(data)
    cfg = ctx.config
    path, timeout = ctx.state_path, cfg["STATE_LOCK_TIMEOUT_SEC"]
    snapshot = state.read(path, timeout)
    found = instances.sweep(ctx.aws, ctx.provider)
    if reconcile.reap(ctx, snapshot, found):
        snapshot = state.read(path, timeout)
    now = time.time()
    pending_timeout = cfg["AWS_INSTANCE_PENDING_TIMEOUT_SEC"]
    progress = describe_progress(ctx, {rid: snapshot["requests"][rid] for rid in ids
                                       if rid in snapshot["requests"]})

    answers, updates, settle = [], {}, {}
    tagged = {key: by_tag(found, key) for key in (tagmod.REQUEST_ID, tagmod.RETURN_ID)}
    for rid in ids:
        rec = snapshot["requests"].get(rid)
        if rec is None:
            rec = rebuild(rid, found, now, tagged)
        if rec is None:
            answers.append({"requestId": rid, "status": COMPLETE_WITH_ERROR, "machines": [],
                            "message": f"unknown request id '{rid}': not in the state file and "
                                       "no instance carries its tag"})
            continue
        if rec["kind"] == "create":
            answer, running_units = create_answer(rid, rec, found, now, pending_timeout,
                                                  progress.get(rid),
                                                  tagged[tagmod.REQUEST_ID].get(rid, []))
            if is_async(rec) and answer["status"] != RUNNING and not rec.get("settled"):
                settle[rid] = running_units
        else:
            answer = return_answer(rid, rec, found, now)
        answers.append(answer)
        updates[rid] = (rec, answer)

    asked = {m["machineId"] for a in answers for m in a["machines"]}
    overdue = [iid for iid in sorted(asked)
               if iid in found and machines.overdue_pending(found[iid], now, pending_timeout)]
    if overdue:
        log.warning("terminating %d instances pending longer than %ss: %s", len(overdue),
                    pending_timeout, overdue)
        instances.terminate(ctx.aws, overdue)

    targets = {}
    for rid, running_units in settle.items():  # ended: the fleet/group launches no more
        rec = dict(snapshot["requests"][rid])
        try:
            apis.module_for(rec["api"]).settle(ctx, rec, running_units)
            targets[rid] = rec.get("target")
        except AwsError as exc:
            log.warning("%s: could not settle %s, will retry: %s", rid, rec.get("fleetIds"), exc)

    for rec in _save(ctx, updates, found, tagged[tagmod.REQUEST_ID], targets, now):
        _cleanup(ctx, rec)
    return {"requests": answers}


def describe_progress(ctx: Context, recs: dict[str, dict[str, Any]]) -> dict[str, dict]:
    """One batched describe per API family for the asked requests still in progress."""
    by_api: dict[str, dict[str, dict[str, Any]]] = {}
    for rid, rec in recs.items():
        if (rec.get("kind") == "create" and is_async(rec) and rec.get("launch") == "done"
                and rec.get("status") == RUNNING):
            by_api.setdefault(rec["api"], {})[rid] = rec
    out: dict[str, dict[str, Any]] = {}
    for api, group in by_api.items():
        try:
            out.update(apis.module_for(api).describe(ctx, group))
        except AwsError as exc:
            if exc.kind in ("throttle", "unknown"):
                raise  # unknown: never conclude a fleet has stopped
            for rid in group:
                out[rid] = {"active": True, "errors": [f"{exc.code}: {exc.aws_message}"]}
    return out


def by_tag(found: dict[str, dict[str, Any]], key: str) -> dict[str, list[str]]:
    """Tag value -> ids of the instances carrying it: one pass over the sweep per poll,
    never one per request asked (which grows as requests x machines)."""
    out: dict[str, list[str]] = {}
    for iid, inst in found.items():
        for tag in inst.get("Tags") or ():
            if tag["Key"] == key:
                out.setdefault(tag["Value"], []).append(iid)
    return out


def rebuild(rid: str, found: dict[str, dict[str, Any]], now: float,
            tagged: dict[str, dict[str, list[str]]]) -> dict[str, Any] | None:
    """A record for a request the state file lost, from the instances' tags."""
    key = tagmod.REQUEST_ID if rid.startswith("req-") else tagmod.RETURN_ID
    mine = {iid: found[iid] for iid in tagged[key].get(rid, [])}
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
        rec["rebuilt"] = True
        return rec
    any_tags = tagmod.from_aws(next(iter(mine.values())).get("Tags"))
    rec = records.new_create(any_tags.get(tagmod.TEMPLATE_ID, "?"), len(mine), "?", first)
    rec["launch"] = "done"
    rec["instances"] = {iid: {"units": 1.0, "name": machines.host_name(i),
                              "type": i.get("InstanceType"), "state": machines.state_of(i),
                              "returnId": None} for iid, i in mine.items()}
    rec["rebuilt"] = True
    log.warning("%s: not in the state file; rebuilt from %d tagged instances", rid, len(mine))
    return rec


def create_answer(rid: str, rec: dict[str, Any], found: dict[str, dict[str, Any]],
                  now: float, pending_timeout: float,
                  progress: dict[str, Any] | None = None,
                  tagged: list[str] | None = None) -> tuple[dict[str, Any], float]:
    """(HostFactory's answer for one create request, units of machines running).

    ``tagged``: ids in ``found`` carrying this request's tag (by_tag), else found is scanned.
    """
    weights = rec.get("weights") or {}
    known = dict(rec["instances"])
    if tagged is None:
        tagged = by_tag(found, tagmod.REQUEST_ID).get(rid, [])
    for iid in tagged:  # instances AWS launched that the record does not list
        inst = found[iid]
        if iid not in known:
            known[iid] = {"units": apis.weights_units(weights, inst.get("InstanceType")),
                          "name": "", "type": inst.get("InstanceType")}
    out, results, running_units = [], [], 0.0
    for iid, info in known.items():
        inst = found.get(iid)
        if inst is None:
            age = now - rec["createdAt"]
            if age < NOT_LISTED_GRACE_SEC:
                result, msg = EXECUTING, "launched, not listed by EC2 yet"
            else:
                result, msg = FAIL, "no longer listed by EC2"
            out.append(machines.missing_machine(iid, info.get("name", ""), result, msg))
        else:
            returned = info.get("returnId") or tagmod.from_aws(inst.get("Tags")).get(
                tagmod.RETURN_ID)
            if returned:  # delivered, then given back: not a failed launch
                result, msg = SUCCEED, f"returned by HostFactory ({returned})"
            else:
                result, msg = machines.create_result(inst, now, pending_timeout)
            out.append(machines.hf_machine(inst, result, msg, info.get("name", "")))
            if result == SUCCEED:
                running_units += float(info.get("units", 1.0))
        results.append(result)
    errors = list(rec.get("errors") or [])
    more_coming = False
    if progress is not None:
        errors += [e for e in progress["errors"] if e not in errors]
        expired = now > rec.get("validUntil", float("inf"))
        more_coming = progress["active"] and not expired
        if expired and running_units < float(rec["units"]):
            errors.append(f"not fulfilled within spotFleetRequestExpiry "
                          f"({int((rec['validUntil'] - rec['createdAt']) / 60)} min)")
    if rec.get("launch") in ("launching", "unknown") and not known:
        if now - rec["createdAt"] < UNKNOWN_LAUNCH_GRACE_SEC:
            return {"requestId": rid, "status": RUNNING, "machines": [],
                    "message": "launch outcome not known yet; " + "; ".join(errors)}, 0.0
        return {"requestId": rid, "status": COMPLETE_WITH_ERROR, "machines": [],
                "message": "no instance was launched for this request; " + "; ".join(errors)
                }, 0.0
    status, msg = machines.create_status(results, float(rec["units"]), running_units, errors,
                                         more_coming)
    if rec.get("rebuilt"):
        msg = ("rebuilt from EC2 tags (state file had no record); " + msg).rstrip("; ")
    return {"requestId": rid, "status": status, "machines": out, "message": msg}, running_units


def return_answer(rid: str, rec: dict[str, Any], found: dict[str, dict[str, Any]],
                  now: float) -> dict[str, Any]:
    out, results = [], []
    age = now - rec["createdAt"]
    for iid, info in rec["machines"].items():
        inst = found.get(iid)
        result, msg = machines.return_result(inst, info.get("refused", ""), age)
        if inst is None:
            out.append(machines.missing_machine(iid, info.get("name", ""), result, msg))
        else:
            out.append(machines.hf_machine(inst, result, msg, info.get("name", "")))
        results.append(result)
    status = machines.return_status(results)
    failed = results.count(FAIL)
    msg = f"{failed} of {len(results)} machines could not be returned" if failed else ""
    return {"requestId": rid, "status": status, "machines": out, "message": msg}


def _save(ctx: Context, updates: dict[str, tuple[dict[str, Any], dict[str, Any]]],
          found: dict[str, dict[str, Any]], by_request: dict[str, list[str]],
          targets: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """Write what this poll learnt; returns create records whose resources can now go."""
    cfg = ctx.config
    to_clean = []
    with state.update(ctx.state_path, cfg["STATE_LOCK_TIMEOUT_SEC"]) as st:
        reqs = st["requests"]
        for rid, (rec, answer) in updates.items():
            if rid not in reqs and rec.get("rebuilt"):
                reqs[rid] = rec  # adopt what the tags told us
            cur = reqs.get(rid)
            if cur is None:
                continue
            cur["status"] = answer["status"]
            if cur["kind"] == "create":
                cur["polled"] = True  # HostFactory knows this id (see orphans.open_requests)
            if cur["kind"] == "return" and answer["status"] != RUNNING and not cur["endedAt"]:
                cur["endedAt"] = now
            if rid in targets:
                cur["settled"] = True
                cur["target"] = targets[rid]
        for rid, cur in reqs.items():  # every create record learns from the same sweep
            if cur.get("kind") != "create" or cur.get("launch") == "abandoned":
                continue
            for iid in by_request.get(rid, []):
                if iid not in cur["instances"]:
                    inst = found[iid]
                    cur["instances"][iid] = {
                        "units": apis.weights_units(cur.get("weights") or {},
                                                    inst.get("InstanceType")),
                        "name": "", "type": inst.get("InstanceType"), "returnId": None}
            for iid, info in cur["instances"].items():
                inst = found.get(iid)
                if inst is not None:
                    info["state"] = machines.state_of(inst)
                    info["name"] = info.get("name") or machines.host_name(inst)
            if _can_clean(cur):
                if not cur.get("cleaned") and (cur.get("fleetIds") or
                                               cur.get("launchTemplateId")):
                    to_clean.append({**cur, "requestId": rid})
                cur["cleaned"] = True
                cur["endedAt"] = cur.get("endedAt") or now
        state.prune(st, now, cfg["REQUEST_RETENTION_HOURS"])
    return to_clean


def _can_clean(rec: dict[str, Any]) -> bool:
    """Nothing of this request runs, and its fleet or group can launch nothing more."""
    if rec.get("launch") not in ("done", "unknown") or rec.get("status") == RUNNING:
        return False
    if is_async(rec) and not rec.get("settled"):
        return False
    return all(i.get("state") == "terminated" for i in rec["instances"].values())


def _cleanup(ctx: Context, rec: dict[str, Any]) -> None:
    try:
        apis.module_for(rec["api"]).cleanup(ctx, rec)
    except AwsError as exc:
        log.warning("%s: cleanup of %s failed, will retry: %s", rec["requestId"],
                    rec.get("fleetIds"), exc)
        with state.update(ctx.state_path, ctx.config["STATE_LOCK_TIMEOUT_SEC"]) as st:
            if rec["requestId"] in st["requests"]:
                st["requests"][rec["requestId"]]["cleaned"] = False
