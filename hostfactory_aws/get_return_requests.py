"""getReturnRequests: the hosts the cloud is taking back, so HostFactory can drain them.

Only what EC2 positively reports counts: an instance stopped or terminated that HostFactory
did not return. A failed listing is an error, never a list of reclaimed hosts.
"""

from __future__ import annotations

import logging
from typing import Any

from . import instances, records, state
from .context import Context
from .errors import InputError
from .machines import GONE_STATES, state_of

log = logging.getLogger(__name__)


def parse_input(data: dict[str, Any]) -> list[dict[str, str]]:
    items = data.get("machines", [])
    if not isinstance(items, list):
        raise InputError("machines: must be a list of {\"name\", \"machineId\"}")
    out = []
    for i, m in enumerate(items):
        if not isinstance(m, dict):
            raise InputError(f"machines[{i}]: must be an object with name and/or machineId")
        out.append({"machineId": m.get("machineId") or "", "name": m.get("name") or ""})
    return out


def run(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    held = parse_input(data)
    snapshot = state.read(ctx.state_path, ctx.config["STATE_LOCK_TIMEOUT_SEC"])
    if not held:  # HostFactory may send {}: fall back on what the state says it holds
        held = records.live_machines(snapshot)
    by_name = records.names_index(snapshot)
    for m in held:
        m["machineId"] = m["machineId"] or by_name.get(m["name"], "")
    ids = [m["machineId"] for m in held if m["machineId"]]
    if not ids:
        return {"message": "no machines to check", "requests": []}
    described = instances.lookup(ctx.aws, ids)
    returned = records.returned_ids(snapshot)
    out = []
    for m in held:
        inst = described.get(m["machineId"])
        if inst is None:
            continue  # EC2 does not list it: not proof of anything
        if state_of(inst) in GONE_STATES and m["machineId"] not in returned:
            out.append({"machine": m["name"] or inst.get("PrivateDnsName") or m["machineId"],
                        "machineId": m["machineId"], "gracePeriod": 0})
    missing = len(ids) - len(described)
    msg = f"{len(out)} of {len(ids)} machines are being taken back by EC2"
    if missing:
        msg += f"; {missing} not listed by EC2, not reported"
        log.warning("getReturnRequests: %d machines not listed by EC2", missing)
    return {"message": msg, "requests": out}
