"""apis/ec2_fleet (type instant) against moto: instances, units, tags, nothing left behind."""

from __future__ import annotations

from typing import Any

import pytest

from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud.apis import ec2_fleet
from hostfactory_aws.errors import AwsError
from tests.support.faults import fail_on


@pytest.fixture
def fleet_template(template: Any, subnets: list[str]) -> dict[str, Any]:
    return template("Fleet", providerApi="EC2Fleet", fleetType="instant",
                    vmTypes={"m5.xlarge": 2, "m5.large": 1}, subnetId=subnets[:1])


def launch(ctx: Any, rid: str, units: int, template_id: str = "Fleet") -> dict[str, Any]:
    return ec2_fleet.launch(ctx, ctx.template(template_id), rid, units,
                            tagmod.base_tags(ctx.provider, rid, template_id))


def our_launch_templates(ec2: Any, rid: str) -> list[dict[str, Any]]:
    found = ec2.describe_launch_templates(Filters=[{"Name": "tag:hostfactory:requestId",
                                                    "Values": [rid]}])
    return found["LaunchTemplates"]


def test_instant_fleet_launches_and_counts_units(rid: str, provider: str, make_ctx: Any,
                                                 fleet_template: dict[str, Any],
                                                 described: Any) -> None:
    ctx = make_ctx(fleet_template)
    got = launch(ctx, rid, 4)
    assert ctx.aws.calls["CreateFleet"] == 1
    assert len(got["fleetIds"]) == 1
    found = described(list(got["instances"]))
    assert set(found) == set(got["instances"])
    weights = {"m5.xlarge": 2.0, "m5.large": 1.0}
    for iid, info in got["instances"].items():
        assert info["type"] == found[iid]["InstanceType"]
        assert info["units"] == weights[info["type"]]
    assert sum(i["units"] for i in got["instances"].values()) >= 4
    for inst in found.values():
        own = {k: v for k, v in tagmod.from_aws(inst["Tags"]).items()
               if not k.startswith("aws:")}  # EC2 adds aws:ec2:fleet-id (the sandbox too)
        assert own == {
            "hostfactory:provider": provider, "hostfactory:requestId": rid,
            "hostfactory:templateId": "Fleet", "Project": "grid", "CostCenter": "hpc"}


def test_fleet_is_tagged_and_its_launch_template_deleted(rid: str, provider: str,
                                                         make_ctx: Any, ec2: Any,
                                                         fleet_template: dict[str, Any]) -> None:
    ctx = make_ctx(fleet_template)
    got = launch(ctx, rid, 2)
    (fleet,) = ec2.describe_fleets(FleetIds=got["fleetIds"])["Fleets"]
    assert fleet["Type"] == "instant"
    assert tagmod.from_aws(fleet["Tags"])["hostfactory:requestId"] == rid
    assert tagmod.from_aws(fleet["Tags"])["hostfactory:provider"] == provider
    assert ctx.aws.calls["CreateLaunchTemplate"] == 1
    assert ctx.aws.calls["DeleteLaunchTemplate"] == 1
    assert our_launch_templates(ec2, rid) == []
    assert got["launchTemplateId"] is None  # nothing for cleanup to remove later


def test_fleet_asks_for_the_template_types_and_capacity(
        rid: str, make_ctx: Any, fleet_template: dict[str, Any], ec2: Any) -> None:
    ctx = make_ctx(fleet_template)
    got = launch(ctx, rid, 6)
    (fleet,) = ec2.describe_fleets(FleetIds=got["fleetIds"])["Fleets"]
    assert fleet["TargetCapacitySpecification"]["TotalTargetCapacity"] == 6
    assert fleet["TargetCapacitySpecification"]["DefaultTargetCapacityType"] == "on-demand"
    overrides = fleet["LaunchTemplateConfigs"][0]["Overrides"]
    assert {(o["InstanceType"], o["WeightedCapacity"]) for o in overrides} == {
        ("m5.xlarge", 2.0), ("m5.large", 1.0)}


def test_cleanup_deletes_the_fleet(rid: str, make_ctx: Any, ec2: Any, described: Any,
                                   fleet_template: dict[str, Any]) -> None:
    ctx = make_ctx(fleet_template)
    got = launch(ctx, rid, 2)
    ec2_fleet.cleanup(ctx, {**got, "fleetType": "instant"})
    (fleet,) = ec2.describe_fleets(FleetIds=got["fleetIds"])["Fleets"]
    assert fleet["FleetState"].startswith("deleted")
    states = {i["State"]["Name"] for i in described(list(got["instances"])).values()}
    assert states <= {"shutting-down", "terminated"}


def test_cleanup_after_every_machine_is_gone(rid: str, make_ctx: Any, ec2: Any,
                                             fleet_template: dict[str, Any]) -> None:
    ctx = make_ctx(fleet_template)
    got = launch(ctx, rid, 2)
    ec2.terminate_instances(InstanceIds=list(got["instances"]))
    ec2_fleet.cleanup(ctx, {**got, "fleetType": "instant"})  # must not fail
    (fleet,) = ec2.describe_fleets(FleetIds=got["fleetIds"])["Fleets"]
    assert fleet["FleetState"].startswith("deleted")


def test_fleet_with_no_instances_raises_and_leaves_nothing(
        rid: str, make_ctx: Any, ec2: Any, fleet_template: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(fleet_template)
    real = ctx.aws.call
    made: dict[str, Any] = {}

    def no_capacity(service: str, operation: str, **params: Any) -> dict[str, Any]:
        resp = real(service, operation, **params)
        if operation == "CreateFleet":  # EC2 answered, but had nothing to give
            made.update(resp)
            return {"FleetId": resp["FleetId"], "Instances": [], "Errors": [{
                "ErrorCode": "InsufficientInstanceCapacity",
                "ErrorMessage": "There is no Spot capacity available"}]}
        return resp

    monkeypatch.setattr(ctx.aws, "call", no_capacity)
    with pytest.raises(AwsError) as exc:
        launch(ctx, rid, 2)
    assert (exc.value.code, exc.value.kind) == ("InsufficientInstanceCapacity", "capacity")
    (fleet,) = ec2.describe_fleets(FleetIds=[made["FleetId"]])["Fleets"]
    assert fleet["FleetState"].startswith("deleted")
    assert our_launch_templates(ec2, rid) == []


def test_create_fleet_refused_deletes_the_launch_template(
        rid: str, make_ctx: Any, ec2: Any, fleet_template: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(fleet_template)
    fail_on(monkeypatch, "CreateFleet", "UnauthorizedOperation", "fatal", "not allowed")
    with pytest.raises(AwsError, match="UnauthorizedOperation"):
        launch(ctx, rid, 2)
    assert ctx.aws.calls["CreateLaunchTemplate"] == 1
    assert our_launch_templates(ec2, rid) == []
