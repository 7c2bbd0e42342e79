"""Auto Scaling groups: one group per request, named ``hf-<request id>``.

One group per request keeps a request's machines, its capacity and its cleanup together, and
makes a partial return touch nothing else. Several instance types (or weights) use a
MixedInstancesPolicy; subnets become VPCZoneIdentifier.

Auto Scaling never picks a host HostFactory holds: groups are created with
NewInstancesProtectedFromScaleIn, and every process that could end or replace a host on its
own (AZRebalance, ReplaceUnhealthy, HealthCheck, alarms, schedules, instance refresh) is
suspended right after creation. Only the plugin removes hosts: returns detach them with
decrement (20 per DetachInstances, after checking they are still in the group, so a retried
return never decrements twice), and the caller then terminates them in one call.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterable

from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import launch_spec
from hostfactory_aws.cloud.apis import (
    launch_template,
    new_launch,
    own_version,
    release_templates,
    resource,
    retry_fresh_template,
    undo_template,
)
from hostfactory_aws.context import Context
from hostfactory_aws.errors import AwsError

log = logging.getLogger(__name__)
NAMES_PER_CALL = 100   # DescribeAutoScalingGroups
IDS_PER_CALL = 50      # DescribeAutoScalingInstances
DETACH_PER_CALL = 20   # DetachInstances
# Processes that end or replace instances on their own; Launch and Terminate stay on (the
# group must launch, and settle may lower what it still tries to launch).
SUSPENDED = ["AZRebalance", "ReplaceUnhealthy", "HealthCheck", "AlarmNotification",
             "ScheduledActions", "InstanceRefresh"]
GONE = ("Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated")


def group_name(request_id: str) -> str:
    return f"hf-{request_id}"


def launch(ctx: Context, t: dict[str, Any], request_id: str, units: int,
           tags: dict[str, str]) -> dict[str, Any]:
    result = new_launch(units)
    name = group_name(request_id)
    lt_ref, created_lt = launch_template(ctx, t, request_id, tags)
    params: dict[str, Any] = {
        "AutoScalingGroupName": name, "MinSize": 0, "MaxSize": units,
        "DesiredCapacity": units, "NewInstancesProtectedFromScaleIn": True,
        "Tags": [{"Key": k, "Value": v, "PropagateAtLaunch": False, "ResourceId": name,
                  "ResourceType": "auto-scaling-group"}
                 for k, v in launch_spec.resource_tags(t, tags).items()],
    }
    if t["subnetIds"]:
        params["VPCZoneIdentifier"] = ",".join(t["subnetIds"])
    # Instance types, weights and the spot share live in the policy; an admin's template
    # with a priceType other than on-demand needs it too, else the priceType is ignored.
    if t["vmTypes"] or t["priceType"] != "ondemand":
        params["MixedInstancesPolicy"] = _mixed_policy(t, lt_ref)
        if any(w != 1 for w in t["vmTypes"].values()):
            params["DesiredCapacityType"] = "units"
    else:  # the admin's launch template names the type
        params["LaunchTemplate"] = lt_ref
    try:
        retry_fresh_template(created_lt, lambda _attempt: ctx.aws.call(
            "autoscaling", "CreateAutoScalingGroup", **params))
    except AwsError as exc:
        if exc.code != "AlreadyExists":  # a retry of this request: the group is ours
            undo_template(ctx, created_lt, exc)
            raise
    result["fleetIds"] = [name]
    result["launchTemplateId"] = created_lt
    result["launchTemplateVersion"] = own_version(t, lt_ref)
    try:
        suspend(ctx, name)
    except AwsError as exc:  # the group exists: never forget it; reconcile suspends later
        log.warning("%s: could not suspend processes of group %s yet: %s", request_id, name,
                    exc)
        result["suspendPending"] = True
    return result


def suspend(ctx: Context, name: str) -> None:
    ctx.aws.call("autoscaling", "SuspendProcesses", AutoScalingGroupName=name,
                 ScalingProcesses=SUSPENDED)


def _mixed_policy(t: dict[str, Any], lt_ref: dict[str, str]) -> dict[str, Any]:
    overrides = [{"InstanceType": it, "WeightedCapacity": str(int(w)) if float(w).is_integer()
                  else str(w)} for it, w in t["vmTypes"].items()]
    dist: dict[str, Any] = {
        "OnDemandBaseCapacity": 0,
        "OnDemandPercentageAboveBaseCapacity": round(100 * launch_spec.on_demand_share(t)),
        "SpotAllocationStrategy": t.get("allocationStrategy", "price-capacity-optimized"),
        "OnDemandAllocationStrategy": t.get("allocationStrategyOnDemand", "lowest-price"),
    }
    if "maxSpotPrice" in t:
        dist["SpotMaxPrice"] = launch_spec.price(t["maxSpotPrice"])
    policy: dict[str, Any] = {"LaunchTemplate": {"LaunchTemplateSpecification": lt_ref},
                              "InstancesDistribution": dist}
    if overrides:
        policy["LaunchTemplate"]["Overrides"] = overrides
    return policy


def describe(ctx: Context, recs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Group state for every request asked about, 100 groups per call.

    Groups short of their desired capacity also get their latest scaling activity, which is
    where EC2's refusal (capacity, bad parameters) is written.
    """
    out = {rid: {"active": False, "errors": []} for rid in recs}
    owner = {name: rid for rid, rec in recs.items() for name in rec.get("fleetIds", [])}
    names = sorted(owner)
    short = []
    for i in range(0, len(names), NAMES_PER_CALL):
        for page in ctx.aws.paginate("autoscaling", "DescribeAutoScalingGroups",
                                     AutoScalingGroupNames=names[i:i + NAMES_PER_CALL],
                                     MaxRecords=100):
            for group in page.get("AutoScalingGroups", []):
                rid = owner.get(group["AutoScalingGroupName"])
                if rid is None:
                    continue
                deleting = group.get("Status") == "Delete in progress"
                in_service = [x for x in group.get("Instances", [])
                              if x.get("LifecycleState") not in GONE]
                active = not deleting and len(in_service) < group.get("DesiredCapacity", 0)
                out[rid]["active"] = active
                if active:
                    short.append((rid, group["AutoScalingGroupName"]))
    for rid, name in short:
        resp = ctx.aws.call("autoscaling", "DescribeScalingActivities",
                            AutoScalingGroupName=name, MaxRecords=5)
        for act in resp.get("Activities", []):
            if act.get("StatusCode") in ("Failed", "Cancelled"):
                out[rid]["errors"].append(f"{act.get('StatusCode')}: "
                                          f"{act.get('StatusMessage') or act.get('Description')}")
                break
    return out


def owned_in(groups: Iterable[dict[str, Any]], provider: str) -> list[dict[str, Any]]:
    """This provider's groups (``hf-<request id>``) not being deleted (pure)."""
    out = []
    for g in groups:
        if g.get("Status") == "Delete in progress":
            continue
        res = resource("ASG", g["AutoScalingGroupName"], g.get("Tags"), provider,
                       g.get("CreatedTime"), target=int(g.get("DesiredCapacity", 0)))
        if res and res["id"] == group_name(res["requestId"]):
            out.append(res)
    return out


def owned(ctx: Context) -> list[dict[str, Any]]:
    """Groups by this provider's tag (Auto Scaling filters on it), 100 per page."""
    pages = ctx.aws.paginate("autoscaling", "DescribeAutoScalingGroups", MaxRecords=100,
                             Filters=[{"Name": f"tag:{tagmod.PROVIDER}", "Values": [
                                 ctx.provider]}])
    return owned_in((g for page in pages for g in page.get("AutoScalingGroups", [])),
                    ctx.provider)


def settle(ctx: Context, rec: dict[str, Any], running_units: float) -> None:
    """The request ended: the group launches nothing more and never scales in a held host.

    Sizes are in the group's own units (weights with DesiredCapacityType units) and never
    above what was asked; held hosts are protected from scale-in, so lowering the desired
    capacity to what runs can only stop launches.
    """
    if rec.get("suspendPending"):
        for name in rec.get("fleetIds", []):
            suspend(ctx, name)
        rec["suspendPending"] = False
    size = min(math.ceil(running_units), int(rec.get("target", running_units)))
    for name in rec.get("fleetIds", []):
        try:
            ctx.aws.call("autoscaling", "UpdateAutoScalingGroup", AutoScalingGroupName=name,
                         MinSize=0, MaxSize=size, DesiredCapacity=size)
        except AwsError as exc:  # never made (a launch killed first) or already deleted
            if "not found" not in exc.aws_message.lower() and exc.kind != "not_found":
                raise
    rec["target"] = size


def before_return(ctx: Context, rec: dict[str, Any], units_by_id: dict[str, float]) -> set[str]:
    """Detach the hosts still in their group, with decrement; the caller terminates them.

    Returns no id: every host is then terminated by one TerminateInstances of the caller.
    """
    ids = sorted(units_by_id)
    by_group: dict[str, list[str]] = {}
    for i in range(0, len(ids), IDS_PER_CALL):
        resp = ctx.aws.call("autoscaling", "DescribeAutoScalingInstances",
                            InstanceIds=ids[i:i + IDS_PER_CALL])
        for inst in resp.get("AutoScalingInstances", []):
            if inst.get("LifecycleState") in GONE or "Detach" in str(inst.get("LifecycleState")):
                continue  # already on its way out: a second decrement would shrink others
            by_group.setdefault(inst["AutoScalingGroupName"], []).append(inst["InstanceId"])
    for name, members in by_group.items():
        for i in range(0, len(members), DETACH_PER_CALL):
            ctx.aws.call("autoscaling", "DetachInstances", AutoScalingGroupName=name,
                         InstanceIds=members[i:i + DETACH_PER_CALL],
                         ShouldDecrementDesiredCapacity=True)
    return set()


def cleanup(ctx: Context, rec: dict[str, Any]) -> None:
    for name in rec.get("fleetIds", []):
        try:
            ctx.aws.call("autoscaling", "DeleteAutoScalingGroup", AutoScalingGroupName=name,
                         ForceDelete=True)
        except AwsError as exc:
            if "not found" not in exc.aws_message.lower() and exc.kind != "not_found":
                raise
    release_templates(ctx, rec)
