"""getRequestStatus: one tag sweep of EC2 answers every request asked, create or return.

The state file says which machines a request launched; the sweep says what they are now
(and finds what asynchronous fleets and groups launched since, by their request-id tag).
Fleets and groups still working are described once per API family, batched. Requests the
state does not know (lost work dir, failover) are answered from the instances' tags. What
the poll then does to the world (settle, cleanup, reaping, pending timeouts) is reconcile's.
"""

from __future__ import annotations

import copy
import logging
import os
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
NOT_LISTED_GRACE_SEC = records.NOT_LISTED_GRACE_SEC
is_async = records.is_async


def parse_input(data: dict[str, Any]) -> list[str]:
    """The request ids asked about, checked, each once (first occurrence first)."""
    ids = []
    for i, item in enumerate(inputs.items(data, "requests", single_ok=True)):
        rid = item.get("requestId") if isinstance(item, dict) else None
        ids.append(inputs.request_id(rid, f"requests[{i}].requestId"))
    return list(dict.fromkeys(ids))


def run(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    ids = parse_input(data)
    lost = not os.path.exists(ctx.state_path)
    snapshot = state.read(ctx.state_path, ctx.config["STATE_LOCK_TIMEOUT_SEC"])
    found = instances.sweep(ctx.aws, ctx.provider)
    if lost:  # a lost work dir: what AWS shows is the truth (no extra call)
        snapshot = reconcile.adopt_lost_state(ctx, found)
    snapshot = reconcile.reap(ctx, snapshot, found)
    now = time.time()
    recs = {}
    index = records.request_index(found)
    for rid in ids:
        if rid in snapshot["requests"]:
            rec = copy.deepcopy(snapshot["requests"][rid])
            records.learn(rec, rid, found, now, index)
            recs[rid] = rec
    progress = describe_progress(ctx, recs)

    answers, asked = [], {}
    for rid in ids:
        rec = recs.get(rid) or reconcile.rebuild(rid, found, now, ctx)
        if rec is None:
            answers.append({"requestId": rid, "status": COMPLETE_WITH_ERROR, "machines": [],
                            "message": f"unknown request id '{rid}': not in the state file and "
                                       "no instance carries its tag"})
            continue
        if rec["kind"] == "create":
            answer, _ = create_answer(rid, rec, found, now,
                                      lambda itype, r=rec: reconcile.pending_limit(ctx, r, itype),
                                      progress.get(rid))
        else:
            answer = return_answer(rid, rec, found, now)
        answers.append(answer)
        asked[rid] = (rec, answer)
    reconcile.after_sweep(ctx, found, now, asked)
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


def create_answer(rid: str, rec: dict[str, Any], found: dict[str, dict[str, Any]],
                  now: float, pending_timeout: Any,
                  progress: dict[str, Any] | None = None) -> tuple[dict[str, Any], float]:
    """(HostFactory's answer for one create request, units of machines running).

    ``rec`` has learnt the sweep (records.learn): its instances are what HostFactory gets,
    never more than it asked. ``pending_timeout`` is seconds, or a function of the type.
    """
    limit = pending_timeout if callable(pending_timeout) else (lambda _t: pending_timeout)
    known = rec["instances"]
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
                result, msg = machines.create_result(inst, now,
                                                     limit(inst.get("InstanceType")))
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
