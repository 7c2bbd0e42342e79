"""When a fleet lowers its target, settles or is cleaned up: the same for EC2 Fleet and Spot
Fleet, which differ only in their AWS calls (``ops.stop`` and ``ops.resize``).

- settle (the request's answer is final): a request fleet is stopped without terminating
  its instances; a maintain fleet's target drops to what runs, never above what was asked.
- before_return: a maintain fleet's target is lowered BEFORE the machines are terminated,
  so EC2 does not replace them.
- cleanup (every machine gone): the fleet is deleted with whatever it still holds, then the
  launch template made for the request.
A refusal for one fleet (an ``Unsuccessful*`` item) is an error: nothing counts as settled
or cleaned until AWS says so.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Callable, Collection, Iterable

from hostfactory_aws.cloud.apis import lowered_target, release_templates
from hostfactory_aws.context import Context
from hostfactory_aws.errors import AwsError


def interface(stop: Callable[..., None], resize: Callable[..., None]) -> tuple[Callable, ...]:
    """(settle, before_return, cleanup) of an API module, from its stop and resize calls."""
    ops = SimpleNamespace(stop=stop, resize=resize)

    def settle_(ctx: Context, rec: dict[str, Any], running_units: float) -> None:
        settle(ops, ctx, rec, running_units)

    def before_return_(ctx: Context, rec: dict[str, Any],
                       units_by_id: dict[str, float]) -> set[str]:
        return before_return(ops, ctx, rec, units_by_id)

    def cleanup_(ctx: Context, rec: dict[str, Any]) -> None:
        cleanup(ops, ctx, rec)

    return settle_, before_return_, cleanup_


def settle(ops: Any, ctx: Context, rec: dict[str, Any], running_units: float) -> None:
    ftype = rec.get("fleetType")
    if ftype == "request":
        ops.stop(ctx, rec, terminate=False)
    elif ftype == "maintain":
        target = min(math.ceil(running_units), int(rec.get("target", 0)))
        if target < rec.get("target", 0):
            ops.resize(ctx, rec, target)


def before_return(ops: Any, ctx: Context, rec: dict[str, Any],
                  units_by_id: dict[str, float]) -> set[str]:
    if rec.get("fleetType") == "maintain" and units_by_id:
        ops.resize(ctx, rec, lowered_target(rec, units_by_id))
    return set()


def cleanup(ops: Any, ctx: Context, rec: dict[str, Any]) -> None:
    ops.stop(ctx, rec, terminate=True)
    release_templates(ctx, rec)


def check_unsuccessful(operation: str, items: list[dict[str, Any]], id_key: str,
                       gone: tuple[str, ...]) -> None:
    """Raise for any fleet AWS did not stop, unless it is already gone or going."""
    bad = [(i.get(id_key), i.get("Error") or {}) for i in items
           if (i.get("Error") or {}).get("Code") not in gone]
    if bad:
        text = "; ".join(f"{fid}: {err.get('Code')}: {err.get('Message')}" for fid, err in bad)
        raise AwsError(operation, str(bad[0][1].get("Code") or "Unsuccessful"), text, "fatal")


def fleet_states(recs: dict[str, dict[str, Any]], owner: dict[str, str],
                 items: Iterable[dict[str, Any]], id_key: str, state_key: str, what: str,
                 active_states: Collection[str]) -> dict[str, dict[str, Any]]:
    """Request id -> whether its fleet still works, and the errors it reports, from the
    described fleets (``owner``: fleet id -> request id). One reading for both fleet APIs."""
    out: dict[str, dict[str, Any]] = {rid: {"active": False, "errors": []} for rid in recs}
    for item in items:
        rid = owner.get(item[id_key])
        if rid is None:
            continue
        state, activity = item.get(state_key), item.get("ActivityStatus")
        out[rid]["active"] = state in active_states and activity != "error"
        for err in item.get("Errors") or []:
            out[rid]["errors"].append(f"{err.get('ErrorCode')}: {err.get('ErrorMessage')}")
        if activity == "error" or state == "failed":
            out[rid]["errors"].append(f"{what} {item[id_key]} is {state}, activity {activity}")
    return out

