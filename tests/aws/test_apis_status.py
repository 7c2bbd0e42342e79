"""getRequestStatus and requestReturnMachines over fleets and groups, in-process against moto.

moto fulfils a fleet or group the moment it is made; to see one still launching, or one
that stops short, its model is patched here (mock_aws runs in this process) so it launches
less than asked, as EC2 short of capacity does.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from hostfactory_aws import state
from hostfactory_aws import tags as tagmod
from hostfactory_aws.verbs import get_request_status, request_machines, request_return_machines

FLEET_ROLE = "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role"
WEIGHTS = {"m5.large": 1, "m5.xlarge": 2}


def ask(ctx: Any, tid: str, count: int) -> str:
    answer = request_machines.run(ctx, {"template": {"templateId": tid, "machineCount": count}})
    return answer["requestId"]


def poll(ctx: Any, *ids: str) -> dict[str, dict[str, Any]]:
    answer = get_request_status.run(ctx, {"requests": [{"requestId": i} for i in ids]})
    assert [a["requestId"] for a in answer["requests"]] == list(ids)
    return {a["requestId"]: a for a in answer["requests"]}


def give_back(ctx: Any, machines: list[dict[str, Any]]) -> str:
    answer = request_return_machines.run(ctx, {"machines": [
        {"name": m["name"], "machineId": m["machineId"]} for m in machines]})
    return answer["requestId"]


def record(ctx: Any, rid: str) -> dict[str, Any]:
    return state.read(ctx.state_path)["requests"][rid]


def expire(ctx: Any, rid: str) -> None:
    """spotFleetRequestExpiry has passed for this request: its record aged by its minutes."""
    with state.update(ctx.state_path) as st:
        rec = st["requests"][rid]
        age = rec["validUntil"] - time.time() + 1
        rec["createdAt"] -= age
        rec["validUntil"] -= age


def calls_of(ctx: Any) -> dict[str, int]:
    return {op: n for op, n in ctx.aws.calls.items() if n}


@pytest.fixture
def fleets_launch_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's EC2 Fleets launch nothing: they stay active, trying."""
    from moto.ec2.models.fleets import Fleet

    monkeypatch.setattr(Fleet, "create_on_demand_requests", lambda self, weight: None)
    monkeypatch.setattr(Fleet, "create_spot_requests", lambda self, weight: [])


@pytest.fixture
def spot_fleets_launch_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.ec2.models.spot_requests import SpotFleetRequest

    original = SpotFleetRequest.create_spot_requests

    def one(self: Any, weight_to_add: float) -> None:
        if self.fulfilled_capacity < 1:
            original(self, 1)

    monkeypatch.setattr(SpotFleetRequest, "create_spot_requests", one)


@pytest.fixture
def groups_launch_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.autoscaling.models import FakeAutoScalingGroup

    original = FakeAutoScalingGroup.replace_autoscaling_group_instances

    def one(self: Any, count_needed: int, propagated_tags: dict[str, str]) -> None:
        if not self.instance_states:
            original(self, 1, propagated_tags)

    monkeypatch.setattr(FakeAutoScalingGroup, "replace_autoscaling_group_instances", one)


def test_poll_cost_is_one_sweep_and_one_describe_for_any_number_of_open_fleets(
        make_ctx: Any, template: Any, fleets_launch_nothing: None) -> None:
    ctx = make_ctx(template("Req", providerApi="EC2Fleet", fleetType="request",
                           vmTypes={"m5.large": 1}, maxNumber=-1),
                   template("RI", vmType="m5.large"))
    plain = ask(ctx, "RI", 1)  # answered by the sweep alone, no fleet to describe
    one = [ask(ctx, "Req", 2)]
    ten = [ask(ctx, "Req", 2) for _ in range(10)]
    per_poll = {"DescribeInstances": 1, "DescribeFleets": 1}
    for ids in (one, ten, one + ten + [plain]):
        for _ in range(2):
            ctx.aws.calls.clear()
            answers = poll(ctx, *ids)
            assert calls_of(ctx) == per_poll, ids
            assert all(answers[r]["status"] == "running" for r in ids if r != plain)
    assert answers[plain]["status"] == "complete"


def test_one_describe_per_api_family_for_open_requests(
        make_ctx: Any, template: Any, fleets_launch_nothing: None,
        spot_fleets_launch_one: None, groups_launch_one: None) -> None:
    ctx = make_ctx(template("EF", providerApi="EC2Fleet", fleetType="maintain",
                           vmTypes={"m5.large": 1}),
                   template("SF", providerApi="SpotFleet", fleetRole=FLEET_ROLE,
                            priceType="spot", vmTypes={"m5.large": 1}),
                   template("G", providerApi="ASG"))
    ids = [ask(ctx, tid, 2) for tid in ("EF", "SF", "G", "EF", "SF", "G")]
    ctx.aws.calls.clear()
    answers = poll(ctx, *ids)
    assert all(a["status"] == "running" for a in answers.values()), answers
    assert calls_of(ctx) == {"DescribeInstances": 1, "DescribeFleets": 1,
                             "DescribeSpotFleetRequests": 1, "DescribeAutoScalingGroups": 1,
                             "DescribeScalingActivities": 2}  # one per group short


def test_expired_fleet_that_launched_nothing_ends_and_is_cleaned_up(
        make_ctx: Any, template: Any, ec2: Any, fleets_launch_nothing: None) -> None:
    ctx = make_ctx(template("Req", providerApi="EC2Fleet", fleetType="request",
                           vmTypes={"m5.large": 1}, spotFleetRequestExpiry=2))
    rid = ask(ctx, "Req", 2)
    rec = record(ctx, rid)
    assert rec["validUntil"] == pytest.approx(rec["createdAt"] + 120)
    first = poll(ctx, rid)[rid]
    assert first["status"] == "running" and first["machines"] == []

    expire(ctx, rid)
    ctx.aws.calls.clear()
    done = poll(ctx, rid)[rid]
    assert done["status"] == "complete_with_error", done
    assert "not fulfilled within spotFleetRequestExpiry (2 min)" in done["message"]
    assert ctx.aws.calls["DeleteFleets"] == 2  # settled (keep instances), then cleaned up
    (fleet,) = ec2.describe_fleets(FleetIds=rec["fleetIds"])["Fleets"]
    assert fleet["FleetState"] in ("deleted", "deleted_terminating")
    assert f"hf-{rid}" not in {lt["LaunchTemplateName"] for lt in
                               ec2.describe_launch_templates()["LaunchTemplates"]}
    assert record(ctx, rid)["cleaned"] is True

    ctx.aws.calls.clear()  # the answer stands, and nothing more is asked of AWS
    again = poll(ctx, rid)[rid]
    assert again["status"] == "complete_with_error"
    assert calls_of(ctx) == {"DescribeInstances": 1}
    held = request_machines.records.held_units(state.read(ctx.state_path))
    assert held.get("Req", 0) == 0


def test_spot_fleet_maintain_short_at_expiry_keeps_what_runs(
        make_ctx: Any, template: Any, ec2: Any, spot_fleets_launch_one: None) -> None:
    ctx = make_ctx(template("SF", providerApi="SpotFleet", fleetType="maintain",
                           fleetRole=FLEET_ROLE, priceType="spot", vmTypes={"m5.large": 1}))
    rid = ask(ctx, "SF", 3)
    first = poll(ctx, rid)[rid]
    assert first["status"] == "running", first  # 1 of 3, the fleet still active
    assert [m["result"] for m in first["machines"]] == ["succeed"]
    (sfr,) = record(ctx, rid)["fleetIds"]

    expire(ctx, rid)
    ctx.aws.calls.clear()
    done = poll(ctx, rid)[rid]
    assert done["status"] == "complete", done  # the grid can use the one it got
    assert "got 1 of 3 units requested" in done["message"]
    assert "spotFleetRequestExpiry" in done["message"]
    assert ctx.aws.calls["ModifySpotFleetRequest"] == 1
    (cfg,) = ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[sfr])[
        "SpotFleetRequestConfigs"]
    assert cfg["SpotFleetRequestConfig"]["TargetCapacity"] == 1  # holds what runs
    assert cfg["SpotFleetRequestState"] == "active"
    kept = done["machines"][0]["machineId"]
    assert ec2.describe_instances(InstanceIds=[kept])["Reservations"][0]["Instances"][0][
        "State"]["Name"] == "running"
    rec = record(ctx, rid)
    assert rec["settled"] is True and rec["target"] == 1

    ctx.aws.calls.clear()  # settled once: later polls modify nothing
    assert poll(ctx, rid)[rid]["status"] == "complete"
    assert "ModifySpotFleetRequest" not in calls_of(ctx)


def test_short_group_is_described_then_shrunk_at_expiry(
        make_ctx: Any, template: Any, groups_launch_one: None) -> None:
    import boto3

    ctx = make_ctx(template("G", providerApi="ASG"))
    rid = ask(ctx, "G", 3)
    ctx.aws.calls.clear()
    first = poll(ctx, rid)[rid]
    assert first["status"] == "running", first
    assert calls_of(ctx) == {"DescribeInstances": 1, "DescribeAutoScalingGroups": 1,
                             "DescribeScalingActivities": 1}

    expire(ctx, rid)
    done = poll(ctx, rid)[rid]
    assert done["status"] == "complete" and "got 1 of 3 units" in done["message"], done
    (group,) = boto3.client("autoscaling", region_name="us-east-1").describe_auto_scaling_groups(
        AutoScalingGroupNames=[f"hf-{rid}"])["AutoScalingGroups"]
    assert group["DesiredCapacity"] == 1 and group["MaxSize"] == 1
    assert len(group["Instances"]) == 1


def test_weighted_maintain_return_lowers_target_by_units(
        make_ctx: Any, template: Any, ec2: Any, subnets: list[str]) -> None:
    ctx = make_ctx(template("W", providerApi="EC2Fleet", fleetType="maintain",
                           vmTypes=dict(WEIGHTS), subnetId=subnets[0],
                           allocationStrategy="diversified"))  # moto then mixes the types
    rid = ask(ctx, "W", 4)
    done = poll(ctx, rid)[rid]
    assert done["status"] == "complete", done
    types = {m["machineId"]: m["instanceType"] for m in done["machines"]}
    assert sum(WEIGHTS[t] for t in types.values()) == 4
    big = [m for m in done["machines"] if m["instanceType"] == "m5.xlarge"]
    assert big, types  # what this test is about: a machine worth 2 units
    (fid,) = record(ctx, rid)["fleetIds"]

    ret = give_back(ctx, big[:1])
    (fleet,) = ec2.describe_fleets(FleetIds=[fid])["Fleets"]
    assert fleet["TargetCapacitySpecification"]["TotalTargetCapacity"] == 2
    assert record(ctx, rid)["target"] == 2
    answers = poll(ctx, ret, rid)
    assert answers[ret]["status"] == "complete"
    left = [m for m in answers[rid]["machines"] if m["status"] == "running"]
    assert sum(WEIGHTS[m["instanceType"]] for m in left) == 2
    found = ec2.describe_instances(Filters=[
        {"Name": f"tag:{tagmod.REQUEST_ID}", "Values": [rid]},
        {"Name": "instance-state-name", "Values": ["running"]}])["Reservations"]
    assert sum(len(r["Instances"]) for r in found) == len(left)
