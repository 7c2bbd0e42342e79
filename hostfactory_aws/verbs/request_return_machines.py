"""requestReturnMachines: give machines back, never touching what this provider did not launch.

Order matters for crash safety: look the machines up, write the return record, let their
fleet or group go of them, tag them with the return id, then terminate. A crash at any
point leaves either nothing done (HostFactory retries) or a record plus tags from which
the return is answered.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hostfactory_aws import answers, inputs, records, state
from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import apis, instances
from hostfactory_aws.context import Context
from hostfactory_aws.machines import state_of

log = logging.getLogger(__name__)


def parse_input(data: dict[str, Any]) -> list[dict[str, str]]:
    """The machines to return (at least one), checked, duplicates merged."""
    return inputs.machines(data)


def resolve_ids(ctx: Context, wanted: list[dict[str, str]],
                snapshot: dict[str, Any]) -> tuple[list[dict[str, str]], list[str]]:
    """Fill in machineId for machines given by name only; returns (machines, unresolved)."""
    by_name = records.names_index(snapshot)
    need = [m["name"] for m in wanted if not m["machineId"] and m["name"] not in by_name]
    if need:
        for name, inst in instances.lookup_names(ctx.aws, need).items():
            by_name[name] = inst["InstanceId"]
    out, unresolved = [], []
    for m in wanted:
        mid = m["machineId"] or by_name.get(m["name"], "")
        if mid:
            out.append({"machineId": mid, "name": m["name"]})
        else:
            unresolved.append(m["name"])
    return out, unresolved


def run(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    wanted = parse_input(data)
    cfg = ctx.config
    path, timeout = ctx.state_path, cfg["STATE_LOCK_TIMEOUT_SEC"]
    snapshot = state.read(path, timeout)
    resolved, unresolved = resolve_ids(ctx, wanted, snapshot)
    owners = records.owner_of(snapshot)
    described = instances.lookup_ours(ctx.aws, ctx.provider, [m["machineId"] for m in resolved],
                                      len(owners))

    rid = records.new_request_id("ret")
    journal = answers.token(path, create=True)
    answers.hold(path, rid)
    rec = records.new_return(time.time(), journal)
    to_terminate: list[str] = []
    for m in resolved:
        iid = m["machineId"]
        inst = described.get(iid)
        refused = ""
        if inst is None:
            refused = f"{iid} not found in EC2 region {cfg['AWS_REGION']}"
        elif tagmod.from_aws(inst.get("Tags")).get(tagmod.PROVIDER) != ctx.provider:
            refused = (f"{iid} was not launched by provider '{ctx.provider}' (no "
                       f"{tagmod.PROVIDER}={ctx.provider} tag); left untouched")
        elif state_of(inst) != "terminated":
            to_terminate.append(iid)
        owner = owners.get(iid) or (tagmod.from_aws(inst.get("Tags")).get(tagmod.REQUEST_ID)
                                    if inst else None)
        rec["machines"][iid] = {"name": m["name"], "refused": refused, "requestId": owner}
    for name in unresolved:
        rec["machines"][name] = {"name": name, "refused": f"no instance named '{name}' found",
                                 "requestId": None}

    with state.update(path, timeout) as st:
        st["requests"][rid] = rec
        _mark_returned(st, rec, rid)
    lowered: dict[str, float] = {}
    tagged = False
    try:
        refused: dict[str, str] = {}
        if to_terminate:
            # Fleets let go first, then the tag marks the machines as returned: a crash in
            # between makes a retry lower a target twice (harmless with no-termination),
            # never leave it high (which would make the fleet replace returned machines).
            handled = release(ctx, snapshot, described, to_terminate, lowered)
            instances.tag(ctx.aws, to_terminate, {tagmod.RETURN_ID: rid})
            tagged = True
            rest = [iid for iid in to_terminate if iid not in handled]
            refused = instances.terminate(ctx.aws, rest) if rest else {}
    except BaseException:
        with state.update(path, timeout) as st:  # outcome unknown: let HostFactory retry
            st["requests"].pop(rid, None)
            _mark_returned(st, rec, None)
            # Untagged machines are lowered again by the retry: give the state back the
            # units lowered for them, so the retry lands on the same target. Tagged ones are
            # skipped by the retry, so their lowering stands.
            for owner_id, units in (lowered.items() if not tagged else ()):
                if owner_id in st["requests"]:
                    st["requests"][owner_id]["target"] += units
        answers.release(path, rid)
        raise
    with state.update(path, timeout) as st:
        cur = st["requests"].get(rid)
        if cur is not None:
            cur["phase"] = "done"
            for iid, why in refused.items():
                cur["machines"][iid]["refused"] = why
    problems = [info["refused"] for info in rec["machines"].values() if info["refused"]]
    problems += list(refused.values())
    msg = f"terminating {len(to_terminate) - len(refused)} machines"
    if problems:
        msg += "; not returned: " + "; ".join(problems)
        log.warning("%s: %s", rid, msg)
    log.info("%s: returning %s", rid, ", ".join(to_terminate))
    answers.mark(path, rid)
    return {"requestId": rid, "message": msg}


def release(ctx: Context, snapshot: dict[str, Any], described: dict[str, dict[str, Any]],
            ids: list[str], lowered: dict[str, float]) -> set[str]:
    """Let each machine's fleet or group go of it before it is terminated.

    Maintain fleets get their target lowered (so nothing replaces the machine), under the
    state lock from the target the state holds now, so two returns at once both count;
    ``lowered`` receives by how much. ASG machines are terminated through the group with
    decrement. A machine already tagged by an earlier return is skipped, so a retried return
    never lowers a target twice. Returns the ids the API terminated itself.
    """
    owners = records.owner_of(snapshot)
    by_owner: dict[str, dict[str, float]] = {}
    for iid in ids:
        inst_tags = tagmod.from_aws(described[iid].get("Tags"))
        if inst_tags.get(tagmod.RETURN_ID):
            continue  # returned before: its fleet already let go of it
        owner = owners.get(iid) or inst_tags.get(tagmod.REQUEST_ID) or ""
        rec = snapshot["requests"].get(owner)
        if rec is None and inst_tags.get(tagmod.GROUP_NAME):
            owner = "asg:" + inst_tags[tagmod.GROUP_NAME]
        elif rec is None:
            continue
        units = (rec or {}).get("instances", {}).get(iid, {}).get("units", 1.0)
        by_owner.setdefault(owner, {})[iid] = float(units)
    handled: set[str] = set()
    cfg = ctx.config
    for owner, units_by_id in by_owner.items():
        if owner.startswith("asg:"):  # state lost: the group's own tag names it
            handled |= apis.module_for("ASG").before_return(
                ctx, {"api": "ASG", "fleetIds": [owner[4:]]}, units_by_id)
            continue
        rec = snapshot["requests"][owner]
        module = apis.module_for(rec.get("api", "RunInstances"))
        if rec.get("fleetType") != "maintain":
            handled |= module.before_return(ctx, dict(rec), units_by_id)
            continue
        with state.update(ctx.state_path, cfg["STATE_LOCK_TIMEOUT_SEC"]) as st:
            cur = st["requests"].get(owner)
            if cur is None:
                continue
            before = cur.get("target", 0)
            fresh = dict(cur)
            handled |= module.before_return(ctx, fresh, units_by_id)
            cur["target"] = fresh.get("target", before)
            lowered[owner] = lowered.get(owner, 0.0) + before - cur["target"]
    # Machines already returned before are still in ids: terminate them again (idempotent).
    return handled


def _mark_returned(st: dict[str, Any], rec: dict[str, Any], rid: str | None) -> None:
    for iid, info in rec["machines"].items():
        owner = st["requests"].get(info.get("requestId") or "")
        if owner and iid in owner.get("instances", {}) and not info["refused"]:
            owner["instances"][iid]["returnId"] = rid
