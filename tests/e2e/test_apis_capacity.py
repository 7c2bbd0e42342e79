"""Capacity through the scripts: weighted fleets count units, and a fleet that stops short
ends its request (with what it got) instead of leaving HostFactory polling forever."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.test_apis_lifecycle import (
    EF_REQUEST,
    EF_WEIGHTED,
    WEIGHTS,
    HostFactory,
    Owner,
    use_api_templates,
)

ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's default account


def test_weighted_fleet_counts_capacity_units(hf: HostFactory) -> None:
    use_api_templates(hf)
    rid = hf.request(EF_WEIGHTED, 4)
    done = hf.wait(rid)
    assert done["status"] == "complete", done
    ec2 = hf.server.instances()
    assert {m["machineId"] for m in done["machines"]} == set(ec2)
    types = [ec2[m["machineId"]]["InstanceType"] for m in done["machines"]]
    assert set(types) <= set(WEIGHTS)
    assert [m["instanceType"] for m in done["machines"]] == types
    units = sum(WEIGHTS[t] for t in types)
    assert units >= 4
    assert len(types) < units, types  # moto mixed the types: 4 units from fewer machines
    # what the template holds is counted in units, and maxNumber (20) is a number of units
    assert hf.templates()[EF_WEIGHTED]["availableNumber"] == 20 - units
    code, answer = hf.call("requestMachines", {"template": {"templateId": EF_WEIGHTED,
                                                            "machineCount": 21 - units}})
    assert code == 1 and "maxNumber" in answer["message"], answer


@pytest.fixture
def fleet_launches_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's EC2 Fleet launches at most one on-demand unit, as EC2 short of capacity does
    (moto's server runs in this process, so its models can be patched here)."""
    from moto.ec2.models.fleets import Fleet

    original = Fleet.create_on_demand_requests

    def at_most_one(self: Any, weight_to_add: float) -> None:
        if self.fulfilled_capacity < 1:
            original(self, 1)

    monkeypatch.setattr(Fleet, "create_on_demand_requests", at_most_one)


def test_failed_request_fleet_ends_with_what_it_got(hf: HostFactory,
                                                    fleet_launches_one: None) -> None:
    use_api_templates(hf)
    rid = hf.request(EF_REQUEST, 3)
    first = hf.status(rid)[0]
    assert first["status"] == "running", first  # 1 of 3 units, the fleet still trying
    assert [m["result"] for m in first["machines"]] == ["succeed"]
    kept = first["machines"][0]["machineId"]

    owner = Owner(hf, EF_REQUEST, rid)
    fleet_id = owner.get()["FleetId"]  # type: ignore[index]
    from moto.ec2.models import ec2_backends

    ec2_backends[ACCOUNT][REGION].fleets[fleet_id].state = "failed"  # EC2 gave up
    hf.server.reset_calls()
    done = hf.status(rid)[0]
    assert done["status"] == "complete", done  # the grid can use what it got
    assert "got 1 of 3 units" in done["message"] and fleet_id in done["message"], done
    calls = hf.server.calls()
    assert calls["DescribeInstances"] == 1 and calls["DescribeFleets"] == 1
    assert calls["DeleteFleets"] == 1  # settled: the request fleet stops trying...
    assert owner.state() == "deleted_running"  # ...without terminating what it launched
    assert hf.server.instances()[kept]["State"]["Name"] == "running"
    again = hf.status(rid)[0]
    assert again["status"] == "complete" and again["machines"][0]["result"] == "succeed"

    ret = hf.give_back(done["machines"])
    assert hf.wait(ret)["status"] == "complete"
    assert hf.server.instances()[kept]["State"]["Name"] == "terminated"
    names = [lt["LaunchTemplateName"]
             for lt in hf.server.ec2.describe_launch_templates()["LaunchTemplates"]]
    assert f"hf-{rid}" not in names
