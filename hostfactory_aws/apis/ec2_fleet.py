"""EC2 Fleet, type instant: one synchronous CreateFleet over a launch template.

Overrides are instance types x subnets with their weights; the fleet and its instances are
tagged at creation. The launch template we make for the call is deleted as soon as the
instant fleet has answered (an instant fleet never launches again).
"""

from __future__ import annotations

import logging
from typing import Any

from .. import launch_spec
from .. import tags as tagmod
from ..context import Context
from ..errors import AwsError
from . import new_launch, prepare

log = logging.getLogger(__name__)


def launch(ctx: Context, t: dict[str, Any], request_id: str, units: int,
           tags: dict[str, str]) -> dict[str, Any]:
    aws = ctx.aws
    result = new_launch()
    all_tags = launch_spec.resource_tags(t, tags)
    created_lt = None
    if t.get("launchTemplateId"):
        lt_ref = launch_spec.launch_template_ref(t)
    else:
        common, data = prepare(ctx, t, tags)
        resp = aws.call(
            "ec2", "CreateLaunchTemplate", LaunchTemplateName=f"hf-{request_id}",
            ClientToken=f"{request_id}-lt",
            LaunchTemplateData=launch_spec.launch_template_data(t, common, data),
            TagSpecifications=tagmod.tag_specs(["launch-template"], all_tags))
        created_lt = resp["LaunchTemplate"]["LaunchTemplateId"]
        lt_ref = {"LaunchTemplateId": created_lt, "Version": "$Latest"}
    params: dict[str, Any] = {
        "Type": "instant",
        "ClientToken": request_id,
        "LaunchTemplateConfigs": [{"LaunchTemplateSpecification": lt_ref,
                                   "Overrides": launch_spec.fleet_overrides(t)}],
        "TargetCapacitySpecification": launch_spec.capacity_split(t, units),
        "TagSpecifications": tagmod.tag_specs(["fleet", "instance"], all_tags),
        "SpotOptions": {"AllocationStrategy": t.get("allocationStrategy",
                                                    "price-capacity-optimized")},
        "OnDemandOptions": {"AllocationStrategy": t.get("allocationStrategyOnDemand",
                                                        "lowest-price")},
    }
    try:
        resp = aws.call("ec2", "CreateFleet", **params)
    finally:
        if created_lt:
            _delete_launch_template(ctx, created_lt)
    result["fleetIds"] = [resp["FleetId"]] if resp.get("FleetId") else []
    weights = t["vmTypes"]
    for group in resp.get("Instances", []):
        itype = group.get("InstanceType")
        for iid in group.get("InstanceIds", []):
            result["instances"][iid] = {"units": float(weights.get(itype, 1.0)) if weights
                                        else 1.0, "name": "", "type": itype}
    for err in resp.get("Errors", []):
        result["errors"].append(f"{err.get('ErrorCode')}: {err.get('ErrorMessage')}")
    if not result["instances"]:
        cleanup(ctx, result)
        first = (resp.get("Errors") or [{}])[0]
        code = first.get("ErrorCode") or "UnfulfillableCapacity"
        from ..aws import classify

        raise AwsError("CreateFleet", code, first.get("ErrorMessage") or
                       "the instant fleet launched no instances", classify(code))
    return result


def _delete_launch_template(ctx: Context, lt_id: str) -> None:
    try:
        ctx.aws.call("ec2", "DeleteLaunchTemplate", LaunchTemplateId=lt_id)
    except AwsError as exc:  # tagged with the request id: found and removed later
        log.warning("could not delete launch template %s: %s", lt_id, exc)


def cleanup(ctx: Context, record: dict[str, Any]) -> None:
    """Delete the instant fleet(s) once none of their machines is left (25 per call)."""
    ids = record.get("fleetIds") or []
    for i in range(0, len(ids), 25):
        ctx.aws.call("ec2", "DeleteFleets", FleetIds=ids[i:i + 25], TerminateInstances=True)
