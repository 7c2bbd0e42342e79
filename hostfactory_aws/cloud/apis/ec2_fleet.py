"""EC2 Fleet: instant (synchronous), request and maintain (asynchronous).

Overrides are instance types x subnets with their weights. An instant fleet answers with
its instances, so the launch template made for it is deleted at once. Request and maintain
fleets launch later, tagging instances through the launch template, which therefore lives
until the fleet is deleted. A maintain fleet's target is lowered BEFORE returned machines are
terminated, with no-termination as excess policy, so EC2 neither replaces them nor picks
other victims.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Iterable

from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import launch_spec
from hostfactory_aws.cloud.apis import (
    delete_launch_template,
    expiry,
    fleet_policy,
    iso,
    launch_template,
    new_launch,
    on_demand_part,
    own_version,
    resource,
    retry_fresh_template,
    undo_template,
    weights_units,
)
from hostfactory_aws.cloud.error_codes import classify, hint
from hostfactory_aws.context import Context
from hostfactory_aws.errors import AwsError

log = logging.getLogger(__name__)
ACTIVE_STATES = ("submitted", "active", "modifying")
DESCRIBE_BATCH = 100
DELETE_BATCH = {"instant": 25, "request": 100, "maintain": 100}
DESCRIBE_PAGE = 1000  # DescribeFleets' largest page
GONE_STATES = ("deleted", "deleted_running", "deleted_terminating")


def launch(ctx: Context, t: dict[str, Any], request_id: str, units: int,
           tags: dict[str, str]) -> dict[str, Any]:
    fleet_type = t["fleetType"]
    result = new_launch(units)
    lt_ref, created_lt = launch_template(ctx, t, request_id, tags)
    params = _params(t, request_id, units, tags, lt_ref)
    def create(attempt: int) -> dict[str, Any]:
        again = attempt and fleet_type == "instant"  # its token would replay the refusal
        resp = ctx.aws.call("ec2", "CreateFleet", **(
            {**params, "ClientToken": f"{request_id}-t{attempt}"} if again else params))
        miss = _fresh_template_miss(resp) if fleet_type == "instant" else None
        if miss is not None:
            raise AwsError("CreateFleet", miss.get("ErrorCode", ""),
                           miss.get("ErrorMessage", ""), "not_found")
        return resp

    try:
        resp = retry_fresh_template(created_lt, create)
    except AwsError as exc:
        undo_template(ctx, created_lt, exc)
        raise
    result["fleetIds"] = [resp["FleetId"]] if resp.get("FleetId") else []
    _add_errors(result, resp)
    result["launchTemplateId"] = created_lt
    result["launchTemplateVersion"] = own_version(t, lt_ref)
    if fleet_type != "instant":
        return result
    _add_instances(result, resp, t)
    got = sum(i["units"] for i in result["instances"].values())
    if t.get("topUpOnDemand") and got < units:
        # IBM's heterogeneous: Spot first; what Spot did not give is bought On-Demand.
        _top_up(ctx, t, request_id, math.ceil(units - got), tags, lt_ref, result)
    try:  # an instant fleet never launches again: its template can go now
        delete_launch_template(ctx, created_lt)
        result["launchTemplateId"] = None
        result["templateDeleted"] = bool(created_lt)
    except AwsError as exc:  # the launch happened: never let clean-up undo that
        log.warning("%s: could not delete launch template %s now, cleanup retries it: %s",
                    request_id, created_lt, exc)
    if not result["instances"]:
        try:
            cleanup(ctx, {**result, "fleetType": "instant"})
        except AwsError as exc:  # nothing runs; the fleet record is harmless
            log.warning("%s: could not delete empty instant fleet %s: %s", request_id,
                        result["fleetIds"], exc)
        first = (resp.get("Errors") or [{}])[0]
        code = first.get("ErrorCode") or "UnfulfillableCapacity"
        message = first.get("ErrorMessage") or "the instant fleet launched no instances"
        raise AwsError("CreateFleet", code, f"{message} ({hint(code)})" if hint(code)
                       else message, classify(code))
    return result


def _params(t: dict[str, Any], token: str, units: int, tags: dict[str, str],
            lt_ref: dict[str, str]) -> dict[str, Any]:
    """CreateFleet parameters: from the template, or from LSF's ec2FleetConfig file."""
    fleet_type = t["fleetType"]
    all_tags = launch_spec.resource_tags(t, tags)
    if t.get("ec2FleetConfigText"):
        params = launch_spec.fleet_config_params(t, units)
        for cfg in params.get("LaunchTemplateConfigs") or [{}]:
            cfg.setdefault("LaunchTemplateSpecification", lt_ref)
            if not cfg.get("Overrides") and t["vmTypes"]:
                cfg["Overrides"] = launch_spec.fleet_overrides(t)
        params.setdefault("LaunchTemplateConfigs", [{
            "LaunchTemplateSpecification": lt_ref, "Overrides": launch_spec.fleet_overrides(t)}])
    else:
        params = {
            "Type": fleet_type,
            "LaunchTemplateConfigs": [{"LaunchTemplateSpecification": lt_ref,
                                       "Overrides": launch_spec.fleet_overrides(t)}],
            "TargetCapacitySpecification": launch_spec.capacity_split(t, units),
            "SpotOptions": {"AllocationStrategy": t.get("allocationStrategy",
                                                        "price-capacity-optimized"),
                            **launch_spec.spot_pools(t)},
            "OnDemandOptions": {"AllocationStrategy": t.get("allocationStrategyOnDemand",
                                                            "lowest-price")},
        }
    params["ClientToken"] = token
    own = [s for s in params.get("TagSpecifications") or []
           if s.get("ResourceType") not in ("fleet", "instance")]
    if fleet_type == "instant":
        params["TagSpecifications"] = tagmod.tag_specs(["fleet", "instance"], all_tags) + own
    else:
        params["TagSpecifications"] = tagmod.tag_specs(["fleet"], all_tags) + own
        params.setdefault("ValidUntil", iso(expiry(t, time.time())))
        params["TerminateInstancesWithExpiration"] = False
        if fleet_type == "maintain":  # AWS: excess capacity exists only for maintain fleets
            params["ExcessCapacityTerminationPolicy"] = "no-termination"
            params["ReplaceUnhealthyInstances"] = False
    return params


def _top_up(ctx: Context, t: dict[str, Any], request_id: str, units: int,
            tags: dict[str, str], lt_ref: dict[str, str], result: dict[str, Any]) -> None:
    od = launch_spec.top_up_template(t)
    log.info("%s: heterogeneous: Spot gave less than asked; %d units On-Demand (%s)",
             request_id, units, ", ".join(od["vmTypes"]))
    try:
        resp = ctx.aws.call("ec2", "CreateFleet",
                            **_params(od, f"{request_id}-od", units, tags, lt_ref))
    except AwsError as exc:
        if exc.kind in ("throttle", "unknown") and not result["instances"]:
            raise
        result["errors"].append(f"{exc.code}: {exc.aws_message}")
        return
    if resp.get("FleetId"):
        result["fleetIds"].append(resp["FleetId"])
    _add_errors(result, resp)
    _add_instances(result, resp, od)


def _fresh_template_miss(resp: dict[str, Any]) -> dict[str, Any] | None:
    """An instant fleet that launched nothing because EC2 does not see our fresh launch
    template yet reports it in Errors, not as a refused call: that error, or None."""
    errors = resp.get("Errors") or []
    if resp.get("Instances") or not errors:
        return None
    from hostfactory_aws.cloud.error_codes import is_fresh_template_miss

    if all(is_fresh_template_miss(e.get("ErrorCode", ""), e.get("ErrorMessage", ""))
           for e in errors):
        return errors[0]
    return None


def _add_errors(result: dict[str, Any], resp: dict[str, Any]) -> None:
    for err in resp.get("Errors", []):
        result["errors"].append(f"{err.get('ErrorCode')}: {err.get('ErrorMessage')}")


def _add_instances(result: dict[str, Any], resp: dict[str, Any], t: dict[str, Any]) -> None:
    for group in resp.get("Instances", []):
        itype = group.get("InstanceType")
        for iid in group.get("InstanceIds", []):
            result["instances"][iid] = {"units": weights_units(t["vmTypes"], itype),
                                        "name": "", "type": itype}


def describe(ctx: Context, recs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Fleet state of every asynchronous fleet asked about, 100 fleets per call."""
    owner = {fid: rid for rid, rec in recs.items() if rec.get("fleetType") != "instant"
             for fid in rec.get("fleetIds", [])}
    ids = sorted(owner)
    fleets = (fleet for i in range(0, len(ids), DESCRIBE_BATCH)
              for fleet in ctx.aws.call("ec2", "DescribeFleets",
                                        FleetIds=ids[i:i + DESCRIBE_BATCH]).get("Fleets", []))
    return fleet_policy.fleet_states(recs, owner, fleets, "FleetId", "FleetState", "fleet",
                                     ACTIVE_STATES)


def owned_in(fleets: Iterable[dict[str, Any]], provider: str) -> list[dict[str, Any]]:
    """This provider's request and maintain fleets not deleted yet (pure). Instant fleets
    launch nothing after their answer (and EC2 lists them only by id): their hosts are
    all there is to end."""
    return [r for r in (_owned_one(f, provider) for f in fleets) if r]


def _owned_one(f: dict[str, Any], provider: str) -> dict[str, Any] | None:
    if f.get("FleetState") in GONE_STATES or f.get("Type") == "instant":
        return None
    spec = f.get("TargetCapacitySpecification") or {}
    return resource("EC2Fleet", f["FleetId"], f.get("Tags"), provider, f.get("CreateTime"),
                    f.get("ClientToken"), fleetType=f.get("Type"),
                    target=int(spec.get("TotalTargetCapacity", 0)))


def owned(ctx: Context) -> list[dict[str, Any]]:
    """DescribeFleets has no tag filter: every fleet of the account, filtered on its tags."""
    pages = ctx.aws.paginate("ec2", "DescribeFleets", MaxResults=DESCRIBE_PAGE)
    return owned_in((f for page in pages for f in page.get("Fleets", [])), ctx.provider)


def _modify(ctx: Context, rec: dict[str, Any], target: int) -> None:
    on_demand = on_demand_part(rec, target)
    spec = {"TotalTargetCapacity": target, "OnDemandTargetCapacity": on_demand,
            "SpotTargetCapacity": target - on_demand}
    for fid in rec.get("fleetIds", []):
        ctx.aws.call("ec2", "ModifyFleet", FleetId=fid, TargetCapacitySpecification=spec,
                     ExcessCapacityTerminationPolicy="no-termination")
    rec["target"] = target


def _delete(ctx: Context, rec: dict[str, Any], terminate: bool) -> None:
    if rec.get("fleetType") == "instant" and not terminate:
        return  # an instant fleet launches nothing after it answered
    ids = rec.get("fleetIds") or []
    size = DELETE_BATCH.get(rec.get("fleetType") or "instant", 25)
    for i in range(0, len(ids), size):
        resp = ctx.aws.call("ec2", "DeleteFleets", FleetIds=ids[i:i + size],
                            TerminateInstances=terminate)
        fleet_policy.check_unsuccessful("DeleteFleets",
                                        resp.get("UnsuccessfulFleetDeletions", []), "FleetId",
                                        ("fleetIdDoesNotExist", "fleetNotInDeletableState"))


# The shared policy (fleet_policy) over this API's own calls.
settle, before_return, cleanup = fleet_policy.interface(stop=_delete, resize=_modify)
