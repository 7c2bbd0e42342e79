"""apis/ec2_fleet, apis/spot_fleet and apis/asg against moto (mock_aws), call by call.

Every AWS call a module makes is recorded (ctx.aws.call wrapped, then really made), so the
tests check the exact parameters EC2 and Auto Scaling would get, and what moto then holds.
"""

from __future__ import annotations

import calendar
import copy
import time
from typing import Any, Callable

import pytest

from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import launch_spec
from hostfactory_aws.cloud.apis import asg, ec2_fleet, spot_fleet

ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's default account
FLEET_ROLE = "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role"
Calls = list[tuple[str, dict[str, Any]]]


def capture(ctx: Any, monkeypatch: pytest.MonkeyPatch,
            fake: dict[str, Callable[..., dict[str, Any]]] | None = None) -> Calls:
    """Record every AWS call (operation, params) the plugin makes through ctx.aws.

    ``fake`` answers chosen operations instead of moto (for what moto cannot produce).
    """
    seen: Calls = []
    real = ctx.aws.call

    def call(service: str, operation: str, **params: Any) -> dict[str, Any]:
        seen.append((operation, copy.deepcopy(params)))
        if fake and operation in fake:
            return fake[operation](**params)
        return real(service, operation, **params)

    monkeypatch.setattr(ctx.aws, "call", call)
    return seen


def only(seen: Calls, operation: str) -> dict[str, Any]:
    (params,) = [p for op, p in seen if op == operation]
    return params


def ops(seen: Calls) -> list[str]:
    return [op for op, _ in seen]


def launch(module: Any, ctx: Any, tid: str, rid: str, units: int) -> tuple[dict, dict]:
    """(the Launch, the create record request_machines would keep for it)."""
    t = ctx.template(tid)
    got = module.launch(ctx, t, rid, units, tagmod.base_tags(ctx.provider, rid, tid))
    rec = {"api": t["providerApi"], "fleetType": t["fleetType"], "fleetIds": got["fleetIds"],
           "launchTemplateId": got["launchTemplateId"], "target": units,
           "launchTemplateVersion": got.get("launchTemplateVersion"),
           "onDemandShare": launch_spec.on_demand_share(t), "weights": t["vmTypes"]}
    return got, rec


def ours(ctx: Any, rid: str, tid: str) -> dict[str, str]:
    """Every tag a resource of this request carries: ours plus the template's instanceTags."""
    return {**tagmod.base_tags(ctx.provider, rid, tid), "Project": "grid", "CostCenter": "hpc"}


def tag_dict(tags: list[dict[str, str]]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags}


def spec_tags(specs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """TagSpecifications as {resource type: tags}; one spec per resource type."""
    out = {s["ResourceType"]: tag_dict(s["Tags"]) for s in specs}
    assert len(out) == len(specs), specs
    return out


def expires_in_minutes(iso: str, minutes: float) -> bool:
    """ValidUntil is `minutes` from now (give or take the test's own run time)."""
    when = calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))
    return abs(when - (time.time() + 60 * minutes)) < 120


def backend() -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[ACCOUNT][REGION]


def as_backend() -> Any:
    from moto.autoscaling.models import autoscaling_backends

    return autoscaling_backends[ACCOUNT][REGION]


def instances_of(ec2: Any, rid: str) -> dict[str, dict[str, Any]]:
    out = {}
    for res in ec2.describe_instances(Filters=[
            {"Name": f"tag:{tagmod.REQUEST_ID}", "Values": [rid]}])["Reservations"]:
        for inst in res["Instances"]:
            out[inst["InstanceId"]] = inst
    return out


def launch_template_names(ec2: Any) -> set[str]:
    return {lt["LaunchTemplateName"] for lt in ec2.describe_launch_templates()["LaunchTemplates"]}


@pytest.fixture(scope="module")
def autoscaling(moto: None) -> Any:
    import boto3

    return boto3.client("autoscaling", region_name=REGION)


# --- the launch template every fleet kind and ASG launches from ---------------------------

def test_launch_template_per_request_tags_instances_and_volumes(
        rid: str, make_ctx: Any, template: Any, ec2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = make_ctx(template("Req", providerApi="EC2Fleet", fleetType="request",
                           vmTypes={"m5.large": 1}, securityGroupIds=["sg-1"],
                           userData="#!/bin/bash\necho hi\n"))
    seen = capture(ctx, monkeypatch)
    got, _ = launch(ec2_fleet, ctx, "Req", rid, 2)
    lt = only(seen, "CreateLaunchTemplate")
    assert lt["LaunchTemplateName"] == f"hf-{rid}"
    assert lt["ClientToken"] == f"{rid}-lt"
    assert spec_tags(lt["TagSpecifications"]) == {"launch-template": ours(ctx, rid, "Req")}
    data = lt["LaunchTemplateData"]
    assert spec_tags(data["TagSpecifications"]) == {"instance": ours(ctx, rid, "Req"),
                                                    "volume": ours(ctx, rid, "Req")}
    assert "InstanceType" not in data and "SubnetId" not in data  # those go in the overrides
    assert data["SecurityGroupIds"] == ["sg-1"]
    import base64

    assert base64.b64decode(data["UserData"]).decode() == "#!/bin/bash\necho hi\n"
    (made,) = [x for x in ec2.describe_launch_templates()["LaunchTemplates"]
               if x["LaunchTemplateName"] == f"hf-{rid}"]
    assert got["launchTemplateId"] == made["LaunchTemplateId"]
    assert tag_dict(made["Tags"]) == ours(ctx, rid, "Req")


def test_admin_launch_template_gets_a_tagged_version_per_request_never_changed(
        rid: str, make_ctx: Any, template: Any, ec2: Any, ami: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    admin = ec2.create_launch_template(LaunchTemplateName=f"admin-{rid}", LaunchTemplateData={
        "ImageId": ami, "InstanceType": "m5.large", "TagSpecifications": [
            {"ResourceType": "instance", "Tags": [{"Key": "Team", "Value": "grid"}]}]}
    )["LaunchTemplate"]["LaunchTemplateId"]
    ctx = make_ctx(template("LT", providerApi="EC2Fleet", fleetType="maintain",
                           launchTemplateId=admin, launchTemplateVersion=1, vmType=None,
                           imageId=None, vmTypes={"m5.large": 1}))
    seen = capture(ctx, monkeypatch)
    got, rec = launch(ec2_fleet, ctx, "LT", rid, 1)
    assert "CreateLaunchTemplate" not in ops(seen)
    made = only(seen, "CreateLaunchTemplateVersion")
    assert (made["LaunchTemplateId"], made["SourceVersion"]) == (admin, "1")
    spec = only(seen, "CreateFleet")["LaunchTemplateConfigs"][0]["LaunchTemplateSpecification"]
    assert spec == {"LaunchTemplateId": admin, "Version": "2"}
    assert got["launchTemplateId"] is None
    assert got["launchTemplateVersion"] == {"LaunchTemplateId": admin, "Version": "2"}
    versions = ec2.describe_launch_template_versions(LaunchTemplateId=admin, Versions=["2"])
    data = versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    specs = {x["ResourceType"]: {t["Key"]: t["Value"] for t in x["Tags"]}
             for x in data["TagSpecifications"]}
    ours = {"hostfactory:provider": ctx.provider, "hostfactory:requestId": rid}
    assert ours.items() <= specs["instance"].items() and ours.items() <= specs["volume"].items()
    assert specs["instance"]["Team"] == "grid"  # the admin's own tags are kept
    ec2_fleet.cleanup(ctx, rec)
    assert "DeleteLaunchTemplate" not in ops(seen)
    assert only(seen, "DeleteLaunchTemplateVersions") == {"LaunchTemplateId": admin,
                                                          "Versions": ["2"]}
    assert f"admin-{rid}" in launch_template_names(ec2)
    left = ec2.describe_launch_template_versions(LaunchTemplateId=admin)
    assert [v["VersionNumber"] for v in left["LaunchTemplateVersions"]] == [1]


# --- EC2 Fleet -----------------------------------------------------------------------------

def heterogeneous(template: Any, tid: str, **fields: Any) -> dict[str, Any]:
    return template(tid, vmTypes={"m5.large": 1, "m5.xlarge": 2}, priceType="heterogeneous",
                    percentOnDemand=25, maxSpotPrice=0.05, **fields)


def test_ec2_fleet_request_parameters(rid: str, make_ctx: Any, template: Any, subnets: list,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(heterogeneous(template, "Mix", providerApi="EC2Fleet", fleetType="request",
                                 allocationStrategy="capacityOptimized",
                                 allocationStrategyOnDemand="prioritized",
                                 spotFleetRequestExpiry=5))
    seen = capture(ctx, monkeypatch)
    got, _ = launch(ec2_fleet, ctx, "Mix", rid, 10)
    p = only(seen, "CreateFleet")
    assert p["Type"] == "request" and p["ClientToken"] == rid
    assert p["TargetCapacitySpecification"] == {
        "TotalTargetCapacity": 10, "DefaultTargetCapacityType": "spot",
        "OnDemandTargetCapacity": 3, "SpotTargetCapacity": 7}  # 25 % of 10, rounded up
    assert p["SpotOptions"] == {"AllocationStrategy": "capacity-optimized"}  # EC2 Fleet's
    assert p["OnDemandOptions"] == {"AllocationStrategy": "prioritized"}     # spelling
    assert expires_in_minutes(p["ValidUntil"], 5)
    assert p["TerminateInstancesWithExpiration"] is False
    assert "ExcessCapacityTerminationPolicy" not in p  # maintain-only options (AWS)
    assert "ReplaceUnhealthyInstances" not in p
    # request fleets may not tag instances in CreateFleet: the launch template does
    assert spec_tags(p["TagSpecifications"]) == {"fleet": ours(ctx, rid, "Mix")}
    (config,) = p["LaunchTemplateConfigs"]
    assert config["LaunchTemplateSpecification"] == {
        "LaunchTemplateId": got["launchTemplateId"], "Version": "$Latest"}
    assert config["Overrides"] == [
        {"InstanceType": it, "WeightedCapacity": w, "SubnetId": s, "MaxPrice": "0.05"}
        for it, w in (("m5.large", 1.0), ("m5.xlarge", 2.0)) for s in subnets[:2]]
    assert got["fleetIds"] and got["instances"] == {}  # asynchronous: instances come later
    assert got["target"] == 10


def test_ec2_fleet_maintain_parameters(rid: str, make_ctx: Any, template: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(template("Keep", providerApi="EC2Fleet", fleetType="maintain",
                           priceType="spot", vmTypes={"m5.large": 1}))
    seen = capture(ctx, monkeypatch)
    launch(ec2_fleet, ctx, "Keep", rid, 2)
    p = only(seen, "CreateFleet")
    assert p["Type"] == "maintain"
    assert p["ReplaceUnhealthyInstances"] is False
    assert p["TargetCapacitySpecification"] == {
        "TotalTargetCapacity": 2, "DefaultTargetCapacityType": "spot", "SpotTargetCapacity": 2}
    assert p["SpotOptions"] == {"AllocationStrategy": "price-capacity-optimized"}  # default
    assert expires_in_minutes(p["ValidUntil"], 30)  # spotFleetRequestExpiry's default
    assert "MaxPrice" not in p["LaunchTemplateConfigs"][0]["Overrides"][0]


def test_ec2_fleet_describe_batches_and_reads_state(
        rid: str, make_ctx: Any, template: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(template("Req", providerApi="EC2Fleet", fleetType="request",
                           vmTypes={"m5.large": 1}))
    got, rec = launch(ec2_fleet, ctx, "Req", rid, 1)
    seen = capture(ctx, monkeypatch)
    recs = {f"req-{i}": {"fleetType": "request", "fleetIds": [f"fleet-{i:08d}"]}
            for i in range(149)}
    recs[rid] = rec
    recs["req-instant"] = {"fleetType": "instant", "fleetIds": ["fleet-instant"]}
    out = ec2_fleet.describe(ctx, recs)
    asked = [p["FleetIds"] for op, p in seen if op == "DescribeFleets"]
    assert [len(a) for a in asked] == [100, 50]  # 150 asynchronous fleets, 100 per call
    assert "fleet-instant" not in sum(asked, [])
    assert out[rid] == {"active": True, "errors": []}
    assert out["req-0"]["active"] is False  # EC2 does not know it: nothing more comes

    backend().fleets[got["fleetIds"][0]].state = "failed"
    out = ec2_fleet.describe(ctx, {rid: rec})
    assert out[rid]["active"] is False
    assert any(got["fleetIds"][0] in e and "failed" in e for e in out[rid]["errors"])


def test_ec2_fleet_settle_request_deletes_without_terminating(
        rid: str, make_ctx: Any, template: Any, ec2: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(template("Req", providerApi="EC2Fleet", fleetType="request",
                           vmTypes={"m5.large": 1}))
    got, rec = launch(ec2_fleet, ctx, "Req", rid, 2)
    seen = capture(ctx, monkeypatch)
    ec2_fleet.settle(ctx, rec, 2.0)
    assert seen == [("DeleteFleets", {"FleetIds": got["fleetIds"], "TerminateInstances": False})]
    (fleet,) = ec2.describe_fleets(FleetIds=got["fleetIds"])["Fleets"]
    assert fleet["FleetState"] == "deleted_running"
    found = instances_of(ec2, rid)
    assert len(found) == 2 and all(i["State"]["Name"] == "running" for i in found.values())
    assert f"hf-{rid}" in launch_template_names(ec2)  # its instances may still need it


def test_ec2_fleet_maintain_settle_return_and_cleanup(
        rid: str, make_ctx: Any, template: Any, ec2: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(heterogeneous(template, "Keep", providerApi="EC2Fleet", fleetType="maintain"))
    got, rec = launch(ec2_fleet, ctx, "Keep", rid, 8)
    fid = got["fleetIds"][0]
    seen = capture(ctx, monkeypatch)

    ec2_fleet.settle(ctx, rec, 8.0)  # got everything: nothing to cut
    assert seen == []
    ec2_fleet.settle(ctx, rec, 6.0)  # ended short: hold what runs, launch nothing more
    assert only(seen, "ModifyFleet") == {
        "FleetId": fid, "ExcessCapacityTerminationPolicy": "no-termination",
        "TargetCapacitySpecification": {"TotalTargetCapacity": 6, "OnDemandTargetCapacity": 2,
                                        "SpotTargetCapacity": 4}}  # the 25 % mix is kept
    assert rec["target"] == 6

    seen.clear()  # returning a 2-unit and a 1-unit machine lowers the target by 3 units
    assert ec2_fleet.before_return(ctx, rec, {"i-a": 2.0, "i-b": 1.0}) == set()
    spec = only(seen, "ModifyFleet")["TargetCapacitySpecification"]
    assert spec["TotalTargetCapacity"] == 3 and rec["target"] == 3
    (fleet,) = ec2.describe_fleets(FleetIds=[fid])["Fleets"]
    assert fleet["TargetCapacitySpecification"]["TotalTargetCapacity"] == 3
    assert all(i["State"]["Name"] == "running" for i in instances_of(ec2, rid).values())

    seen.clear()
    ec2_fleet.cleanup(ctx, rec)
    assert seen == [("DeleteFleets", {"FleetIds": [fid], "TerminateInstances": True}),
                    ("DeleteLaunchTemplate", {"LaunchTemplateId": got["launchTemplateId"]})]
    assert f"hf-{rid}" not in launch_template_names(ec2)
    (fleet,) = ec2.describe_fleets(FleetIds=[fid])["Fleets"]
    assert fleet["FleetState"] in ("deleted", "deleted_terminating")
    ec2_fleet.cleanup(ctx, rec)  # a repeated cleanup (its state write was lost) is harmless


def test_ec2_fleet_request_return_touches_no_fleet(
        rid: str, make_ctx: Any, template: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(template("Req", providerApi="EC2Fleet", fleetType="request",
                           vmTypes={"m5.large": 1}))
    _, rec = launch(ec2_fleet, ctx, "Req", rid, 2)
    seen = capture(ctx, monkeypatch)
    assert ec2_fleet.before_return(ctx, rec, {"i-a": 1.0}) == set()
    assert seen == [] and rec["target"] == 2


# --- Spot Fleet ----------------------------------------------------------------------------

def test_spot_fleet_parameters(rid: str, make_ctx: Any, template: Any, subnets: list,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(heterogeneous(template, "SF", providerApi="SpotFleet", fleetType="maintain",
                                 fleetRole=FLEET_ROLE, allocationStrategy="capacity-optimized",
                                 spotFleetRequestExpiry=1))
    seen = capture(ctx, monkeypatch)
    got, _ = launch(spot_fleet, ctx, "SF", rid, 10)
    c = only(seen, "RequestSpotFleet")["SpotFleetRequestConfig"]
    assert c["IamFleetRole"] == FLEET_ROLE
    assert c["Type"] == "maintain" and c["ClientToken"] == rid
    assert c["TargetCapacity"] == 10 and c["OnDemandTargetCapacity"] == 3
    assert c["AllocationStrategy"] == "capacityOptimized"      # Spot Fleet spells it
    assert c["OnDemandAllocationStrategy"] == "lowestPrice"    # in camelCase
    assert c["SpotPrice"] == "0.05"
    assert expires_in_minutes(c["ValidUntil"], 1)
    assert c["TerminateInstancesWithExpiration"] is False
    assert c["ExcessCapacityTerminationPolicy"] == "noTermination"
    assert c["ReplaceUnhealthyInstances"] is False
    assert spec_tags(c["TagSpecifications"]) == {"spot-fleet-request": ours(ctx, rid, "SF")}
    (config,) = c["LaunchTemplateConfigs"]
    assert config["LaunchTemplateSpecification"] == {
        "LaunchTemplateId": got["launchTemplateId"], "Version": "$Latest"}
    assert config["Overrides"] == [  # Spot Fleet names the per-override cap SpotPrice
        {"InstanceType": it, "WeightedCapacity": w, "SubnetId": s, "SpotPrice": "0.05"}
        for it, w in (("m5.large", 1.0), ("m5.xlarge", 2.0)) for s in subnets[:2]]
    assert got["fleetIds"] and got["launchTemplateId"]


@pytest.mark.parametrize(("ours_", "theirs"), [
    ("lowest-price", "lowestPrice"), ("diversified", "diversified"),
    ("capacity-optimized-prioritized", "capacityOptimizedPrioritized"),
    ("priceCapacityOptimized", "priceCapacityOptimized")])
def test_spot_fleet_allocation_spelling(rid: str, make_ctx: Any, template: Any, ours_: str,
                                        theirs: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(template("SF", providerApi="SpotFleet", fleetRole=FLEET_ROLE,
                           priceType="spot", vmTypes={"m5.large": 1},
                           allocationStrategy=ours_))
    seen = capture(ctx, monkeypatch)
    launch(spot_fleet, ctx, "SF", rid, 1)
    c = only(seen, "RequestSpotFleet")["SpotFleetRequestConfig"]
    assert c["Type"] == "request"  # SpotFleet's default fleet type
    assert c["AllocationStrategy"] == theirs
    assert "SpotPrice" not in c  # no maxSpotPrice: the on-demand price caps it


def test_spot_fleet_describe_settle_return_cleanup(
        rid: str, make_ctx: Any, template: Any, ec2: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(template("SF", providerApi="SpotFleet", fleetType="maintain",
                           fleetRole=FLEET_ROLE, priceType="spot", vmTypes={"m5.large": 1}))
    got, rec = launch(spot_fleet, ctx, "SF", rid, 3)
    sfr = got["fleetIds"][0]
    seen = capture(ctx, monkeypatch)
    recs = {f"req-{i}": {"fleetIds": [f"sfr-{i:08d}"]} for i in range(149)}
    recs[rid] = rec
    out = spot_fleet.describe(ctx, recs)
    assert out[rid] == {"active": True, "errors": []}
    assert out["req-0"]["active"] is False
    asked = [p["SpotFleetRequestIds"] for op, p in seen if op == "DescribeSpotFleetRequests"]
    assert [len(a) for a in asked] == [100, 50] and sfr in sum(asked, [])

    seen.clear()
    spot_fleet.settle(ctx, rec, 2.0)
    assert only(seen, "ModifySpotFleetRequest") == {
        "SpotFleetRequestId": sfr, "TargetCapacity": 2, "OnDemandTargetCapacity": 0,
        "ExcessCapacityTerminationPolicy": "noTermination"}
    seen.clear()
    assert spot_fleet.before_return(ctx, rec, {"i-a": 1.0}) == set()
    assert only(seen, "ModifySpotFleetRequest")["TargetCapacity"] == 1
    (cfg,) = ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[sfr])[
        "SpotFleetRequestConfigs"]
    assert cfg["SpotFleetRequestConfig"]["TargetCapacity"] == 1
    assert len(instances_of(ec2, rid)) == 3  # nothing terminated by lowering the target

    seen.clear()
    spot_fleet.cleanup(ctx, rec)
    assert seen == [("CancelSpotFleetRequests", {"SpotFleetRequestIds": [sfr],
                                                 "TerminateInstances": True}),
                    ("DeleteLaunchTemplate", {"LaunchTemplateId": got["launchTemplateId"]})]
    assert f"hf-{rid}" not in launch_template_names(ec2)
    left = ec2.describe_spot_fleet_requests()["SpotFleetRequestConfigs"]
    assert sfr not in {c["SpotFleetRequestId"] for c in left}


def test_spot_fleet_request_settle_cancels_without_terminating(
        rid: str, make_ctx: Any, template: Any, ec2: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(template("SF", providerApi="SpotFleet", fleetRole=FLEET_ROLE,
                           priceType="spot", vmTypes={"m5.large": 1}))
    got, rec = launch(spot_fleet, ctx, "SF", rid, 2)
    seen = capture(ctx, monkeypatch)
    spot_fleet.settle(ctx, rec, 1.0)
    assert seen == [("CancelSpotFleetRequests", {"SpotFleetRequestIds": got["fleetIds"],
                                                 "TerminateInstances": False})]
    (cfg,) = ec2.describe_spot_fleet_requests(SpotFleetRequestIds=got["fleetIds"])[
        "SpotFleetRequestConfigs"]
    assert cfg["SpotFleetRequestState"] == "cancelled_running"
    assert all(i["State"]["Name"] == "running" for i in instances_of(ec2, rid).values())
    assert spot_fleet.describe(ctx, {rid: rec})[rid]["active"] is False


# --- Auto Scaling groups -------------------------------------------------------------------

def test_asg_single_type_parameters(rid: str, make_ctx: Any, template: Any, subnets: list,
                                    autoscaling: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(template("G", providerApi="ASG"))
    seen = capture(ctx, monkeypatch)
    got, _ = launch(asg, ctx, "G", rid, 3)
    p = only(seen, "CreateAutoScalingGroup")
    name = f"hf-{rid}"
    lt_ref = {"LaunchTemplateId": got["launchTemplateId"], "Version": "$Latest"}
    group_tags = p.pop("Tags")
    assert sorted(group_tags, key=lambda t: t["Key"]) == [
        {"Key": k, "Value": v, "PropagateAtLaunch": False, "ResourceId": name,
         "ResourceType": "auto-scaling-group"} for k, v in sorted(ours(ctx, rid, "G").items())]
    assert p == {
        "AutoScalingGroupName": name, "MinSize": 0, "MaxSize": 3, "DesiredCapacity": 3,
        "NewInstancesProtectedFromScaleIn": True, "VPCZoneIdentifier": ",".join(subnets[:2]),
        "MixedInstancesPolicy": {
            "LaunchTemplate": {"LaunchTemplateSpecification": lt_ref,
                               "Overrides": [{"InstanceType": "m5.large",
                                              "WeightedCapacity": "1"}]},
            "InstancesDistribution": {"OnDemandBaseCapacity": 0,
                                      "OnDemandPercentageAboveBaseCapacity": 100,
                                      "SpotAllocationStrategy": "price-capacity-optimized",
                                      "OnDemandAllocationStrategy": "lowest-price"}}}
    assert got["fleetIds"] == [name] and got["instances"] == {}
    (group,) = autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[name])["AutoScalingGroups"]
    assert ours(ctx, rid, "G").items() <= tag_dict(group["Tags"]).items()
    assert group["DesiredCapacity"] == 3 and len(group["Instances"]) == 3


def test_asg_weighted_heterogeneous_parameters(rid: str, make_ctx: Any, template: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(heterogeneous(template, "GW", providerApi="ASG",
                                 allocationStrategy="capacityOptimized"))
    seen = capture(ctx, monkeypatch)
    launch(asg, ctx, "GW", rid, 4)
    p = only(seen, "CreateAutoScalingGroup")
    assert p["DesiredCapacityType"] == "units"  # weights: capacity counts units
    assert p["DesiredCapacity"] == 4 and p["MaxSize"] == 4
    policy = p["MixedInstancesPolicy"]
    assert policy["LaunchTemplate"]["Overrides"] == [
        {"InstanceType": "m5.large", "WeightedCapacity": "1"},
        {"InstanceType": "m5.xlarge", "WeightedCapacity": "2"}]
    assert policy["InstancesDistribution"] == {
        "OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 25,
        "SpotAllocationStrategy": "capacity-optimized",  # hyphenated, like EC2 Fleet
        "OnDemandAllocationStrategy": "lowest-price", "SpotMaxPrice": "0.05"}


def test_asg_admin_template_with_spot_goes_through_a_mixed_policy(
        rid: str, make_ctx: Any, template: Any, ec2: Any, ami: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    admin = ec2.create_launch_template(LaunchTemplateName=f"admin-{rid}", LaunchTemplateData={
        "ImageId": ami, "InstanceType": "m5.large"})["LaunchTemplate"]["LaunchTemplateId"]
    ctx = make_ctx(template("GS", providerApi="ASG", priceType="spot",
                           launchTemplateId=admin, vmType=None, imageId=None))
    seen = capture(ctx, monkeypatch)
    launch(asg, ctx, "GS", rid, 2)
    p = only(seen, "CreateAutoScalingGroup")
    assert "LaunchTemplate" not in p
    policy = p["MixedInstancesPolicy"]
    assert policy["LaunchTemplate"]["LaunchTemplateSpecification"]["LaunchTemplateId"] == admin
    assert policy["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 0


def test_asg_describe_short_group_reports_scaling_failure(
        rid: str, make_ctx: Any, template: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(template("G", providerApi="ASG"))
    _, rec = launch(asg, ctx, "G", rid, 2)
    refusal = {"Activities": [
        {"StatusCode": "Successful", "Description": "Launching a new EC2 instance"},
        {"StatusCode": "Failed", "StatusMessage": "InsufficientInstanceCapacity: no m5.large"}]}
    seen = capture(ctx, monkeypatch, fake={"DescribeScalingActivities": lambda **_: refusal})
    recs = {f"req-{i}": {"fleetIds": [f"hf-req-{i}"]} for i in range(119)}
    recs[rid] = rec
    assert asg.describe(ctx, recs)[rid] == {"active": False, "errors": []}  # 2 of 2 in service
    asked = [p["AutoScalingGroupNames"] for op, p in seen if op == "DescribeAutoScalingGroups"]
    assert [len(a) for a in asked] == [100, 20]
    assert "DescribeScalingActivities" not in ops(seen)  # only asked of groups short

    as_backend().autoscaling_groups[f"hf-{rid}"].desired_capacity = 3  # one short now
    seen.clear()
    out = asg.describe(ctx, {rid: rec})
    assert out[rid]["active"] is True
    assert out[rid]["errors"] == ["Failed: InsufficientInstanceCapacity: no m5.large"]
    assert only(seen, "DescribeScalingActivities")["AutoScalingGroupName"] == f"hf-{rid}"


def test_asg_settle_return_and_cleanup(rid: str, make_ctx: Any, template: Any, ec2: Any,
                                       autoscaling: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(template("G", providerApi="ASG"))
    got, rec = launch(asg, ctx, "G", rid, 4)
    name = f"hf-{rid}"

    def group() -> dict[str, Any]:
        (g,) = autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[name])["AutoScalingGroups"]
        return g

    ids = sorted(i["InstanceId"] for i in group()["Instances"])
    # Auto Scaling never picks a held host: protected, and no process that replaces hosts
    assert group()["NewInstancesProtectedFromScaleIn"] is True
    assert {"AZRebalance", "ReplaceUnhealthy", "HealthCheck"} <= {
        p["ProcessName"] for p in group()["SuspendedProcesses"]}
    seen = capture(ctx, monkeypatch)
    asg.settle(ctx, {**rec, "target": 4}, 5.0)  # never above what was asked
    assert seen == [("UpdateAutoScalingGroup", {"AutoScalingGroupName": name, "MinSize": 0,
                                                "MaxSize": 4, "DesiredCapacity": 4})]

    # One instance already on its way out (a return before): it must not decrement again.
    for st in as_backend().autoscaling_groups[name].instance_states:
        if st.instance.id == ids[0]:
            st.lifecycle_state = "Terminating"
    seen.clear()
    handled = asg.before_return(ctx, rec, {ids[0]: 1.0, ids[1]: 1.0, "i-0notinagroup0": 1.0})
    assert handled == set()  # the caller terminates every host in one call
    assert ops(seen) == ["DescribeAutoScalingInstances", "DetachInstances"]
    assert only(seen, "DetachInstances") == {
        "AutoScalingGroupName": name, "InstanceIds": [ids[1]],
        "ShouldDecrementDesiredCapacity": True}
    assert group()["DesiredCapacity"] == 3  # decremented by exactly the one detached
    assert ids[1] not in {i["InstanceId"] for i in group()["Instances"]}

    seen.clear()
    asg.cleanup(ctx, rec)
    assert seen == [("DeleteAutoScalingGroup", {"AutoScalingGroupName": name,
                                                "ForceDelete": True}),
                    ("DeleteLaunchTemplate", {"LaunchTemplateId": got["launchTemplateId"]})]
    assert autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[name])["AutoScalingGroups"] == []
    assert f"hf-{rid}" not in launch_template_names(ec2)
    asg.cleanup(ctx, rec)  # the group is gone already: a repeated cleanup is harmless
