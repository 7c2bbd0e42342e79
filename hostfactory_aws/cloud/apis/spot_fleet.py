"""Spot Fleet (RequestSpotFleet), types request and maintain.

Same shape as EC2 Fleet's asynchronous types: instances are tagged at creation through the
launch template, the request itself through TagSpecifications; a maintain request's target
is lowered before returned machines are terminated; the last machine gone cancels the
request and deletes the launch template.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable

from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import apis as common
from hostfactory_aws.cloud import launch_spec
from hostfactory_aws.cloud.apis import fleet_policy
from hostfactory_aws.context import Context
from hostfactory_aws.errors import AwsError

log = logging.getLogger(__name__)
# Spot Fleet spells allocation strategies in camelCase; templates are normalised to EC2
# Fleet's hyphenated spelling.
ALLOCATION = {"lowest-price": "lowestPrice", "diversified": "diversified",
              "capacity-optimized": "capacityOptimized",
              "capacity-optimized-prioritized": "capacityOptimizedPrioritized",
              "price-capacity-optimized": "priceCapacityOptimized"}
ON_DEMAND_ALLOCATION = {"lowest-price": "lowestPrice", "prioritized": "prioritized"}
ACTIVE_STATES = ("submitted", "active", "modifying")
BATCH = 100
DESCRIBE_PAGE = 1000  # DescribeSpotFleetRequests' largest page
GONE_STATES = ("cancelled", "cancelled_running", "cancelled_terminating")


def launch(ctx: Context, t: dict[str, Any], request_id: str, units: int,
           tags: dict[str, str]) -> dict[str, Any]:
    result = common.new_launch(units)
    all_tags = launch_spec.resource_tags(t, tags)
    lt_ref, created_lt = common.launch_template(ctx, t, request_id, tags)
    split = launch_spec.capacity_split(t, units)
    overrides = launch_spec.fleet_overrides(t)
    for o in overrides:  # Spot Fleet names the per-override price SpotPrice
        if "MaxPrice" in o:
            o["SpotPrice"] = o.pop("MaxPrice")
    config: dict[str, Any] = {
        "IamFleetRole": t["fleetRole"],
        "TargetCapacity": units,
        "OnDemandTargetCapacity": split.get("OnDemandTargetCapacity", 0),
        "Type": t["fleetType"],
        "AllocationStrategy": ALLOCATION[t.get("allocationStrategy",
                                               "price-capacity-optimized")],
        "OnDemandAllocationStrategy": ON_DEMAND_ALLOCATION[
            t.get("allocationStrategyOnDemand", "lowest-price")],
        "ValidUntil": common.iso(common.expiry(t, time.time())),
        "TerminateInstancesWithExpiration": False,
        "ReplaceUnhealthyInstances": False,
        "LaunchTemplateConfigs": [{"LaunchTemplateSpecification": lt_ref,
                                   "Overrides": overrides}],
        "TagSpecifications": tagmod.tag_specs(["spot-fleet-request"], all_tags),
        "ClientToken": request_id,
        **launch_spec.spot_pools(t),  # Symphony's poolsCount
    }
    if t["fleetType"] == "maintain":  # AWS: only a maintain request has excess capacity
        config["ExcessCapacityTerminationPolicy"] = "noTermination"
    if "maxSpotPrice" in t:
        config["SpotPrice"] = launch_spec.price(t["maxSpotPrice"])
    try:
        resp = common.retry_fresh_template(created_lt, lambda _attempt: ctx.aws.call(
            "ec2", "RequestSpotFleet", SpotFleetRequestConfig=config))
    except AwsError as exc:
        common.undo_template(ctx, created_lt, exc)
        raise
    result["fleetIds"] = [resp["SpotFleetRequestId"]]
    result["launchTemplateId"] = created_lt
    result["launchTemplateVersion"] = common.own_version(t, lt_ref)
    return result


def describe(ctx: Context, recs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    owner = {fid: rid for rid, rec in recs.items() for fid in rec.get("fleetIds", [])}
    ids = sorted(owner)
    configs = (cfg for i in range(0, len(ids), BATCH)
               for page in ctx.aws.paginate("ec2", "DescribeSpotFleetRequests",
                                            SpotFleetRequestIds=ids[i:i + BATCH])
               for cfg in page.get("SpotFleetRequestConfigs", []))
    return fleet_policy.fleet_states(recs, owner, configs, "SpotFleetRequestId",
                                     "SpotFleetRequestState", "spot fleet request",
                                     ACTIVE_STATES)


def owned_in(configs: Iterable[dict[str, Any]], provider: str) -> list[dict[str, Any]]:
    """This provider's Spot Fleet requests not cancelled yet (pure)."""
    return [r for r in (_owned_one(c, provider) for c in configs) if r]


def _owned_one(c: dict[str, Any], provider: str) -> dict[str, Any] | None:
    if c.get("SpotFleetRequestState") in GONE_STATES:
        return None
    cfg = c.get("SpotFleetRequestConfig") or {}
    return common.resource("SpotFleet", c["SpotFleetRequestId"], c.get("Tags"), provider,
                           c.get("CreateTime"), cfg.get("ClientToken"),
                           fleetType=cfg.get("Type", "maintain"),
                           target=int(cfg.get("TargetCapacity", 0)))


def owned(ctx: Context) -> list[dict[str, Any]]:
    """DescribeSpotFleetRequests has no filter: every request, filtered on its tags."""
    pages = ctx.aws.paginate("ec2", "DescribeSpotFleetRequests", MaxResults=DESCRIBE_PAGE)
    return owned_in((c for page in pages for c in page.get("SpotFleetRequestConfigs", [])),
                    ctx.provider)


def _modify(ctx: Context, rec: dict[str, Any], target: int) -> None:
    on_demand = common.on_demand_part(rec, target)
    for fid in rec.get("fleetIds", []):
        ctx.aws.call("ec2", "ModifySpotFleetRequest", SpotFleetRequestId=fid,
                     TargetCapacity=target, OnDemandTargetCapacity=on_demand,
                     ExcessCapacityTerminationPolicy="noTermination")
    rec["target"] = target


def _cancel(ctx: Context, rec: dict[str, Any], terminate: bool) -> None:
    ids = rec.get("fleetIds") or []
    for i in range(0, len(ids), BATCH):
        resp = ctx.aws.call("ec2", "CancelSpotFleetRequests",
                            SpotFleetRequestIds=ids[i:i + BATCH], TerminateInstances=terminate)
        fleet_policy.check_unsuccessful(
            "CancelSpotFleetRequests", resp.get("UnsuccessfulFleetRequests", []),
            "SpotFleetRequestId",
            ("fleetRequestIdDoesNotExist", "fleetRequestNotInCancellableState"))


# The shared policy (fleet_policy) over this API's own calls.
settle, before_return, cleanup = fleet_policy.interface(stop=_cancel, resize=_modify)
