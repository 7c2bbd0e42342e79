"""requestReturnMachines: give machines back, never touching what this provider did not launch.

Order matters for crash safety: look the machines up, write the return record, tag the
instances with the return id, then terminate. A crash at any point leaves either nothing
done (HostFactory retries) or a record plus tags from which the return is answered.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from . import instances, records, state
from . import tags as tagmod
from .context import Context
from .errors import InputError
from .machines import state_of

log = logging.getLogger(__name__)


def parse_input(data: dict[str, Any]) -> list[dict[str, str]]:
    items = data.get("machines")
    if not isinstance(items, list) or not items:
        raise InputError("machines: required, a non-empty list of {\"name\", \"machineId\"}")
    out = []
    for i, m in enumerate(items):
        if not isinstance(m, dict):
            raise InputError(f"machines[{i}]: must be an object with name and/or machineId")
        mid, name = m.get("machineId"), m.get("name")
        if mid is not None and (not isinstance(mid, str) or not mid.startswith("i-")):
            raise InputError(f"machines[{i}].machineId: {mid!r} is not an EC2 instance id")
        if not mid and (not isinstance(name, str) or not name):
            raise InputError(f"machines[{i}]: needs machineId or name")
        out.append({"machineId": mid or "", "name": name or ""})
    return out


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
    described = instances.lookup(ctx.aws, [m["machineId"] for m in resolved])
    owners = records.owner_of(snapshot)

    rid = records.new_request_id("ret")
    rec = records.new_return(time.time())
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
    try:
        if to_terminate:
            instances.tag(ctx.aws, to_terminate, {tagmod.RETURN_ID: rid})
            refused = instances.terminate(ctx.aws, to_terminate)
        else:
            refused = {}
    except BaseException:
        with state.update(path, timeout) as st:  # outcome unknown: let HostFactory retry
            st["requests"].pop(rid, None)
            _mark_returned(st, rec, None)
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
    return {"requestId": rid, "message": msg}


def _mark_returned(st: dict[str, Any], rec: dict[str, Any], rid: str | None) -> None:
    for iid, info in rec["machines"].items():
        owner = st["requests"].get(info.get("requestId") or "")
        if owner and iid in owner.get("instances", {}) and not info["refused"]:
            owner["instances"][iid]["returnId"] = rid
