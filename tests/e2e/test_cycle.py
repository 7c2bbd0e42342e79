"""The whole HostFactory cycle through the scripts, checked against what EC2 (moto) holds."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.hostfactory import (
    FLEET_OD,
    FLEET_SPOT,
    INSTANCE_TAGS,
    PROVIDER,
    PROVIDER_TAG,
    REQUEST_TAG,
    RETURN_TAG,
    RI,
    TEMPLATE_TAG,
    WEIGHTS,
    HostFactory,
    tags_of,
)

MAX = {RI: 10, FLEET_OD: 20, FLEET_SPOT: 10}


def units_of(instances: list[dict[str, Any]]) -> int:
    """Capacity units of EC2 instances, with the weighted template's weights."""
    return sum(WEIGHTS.get(i["InstanceType"], 1) for i in instances)


def fleets_of(hf: HostFactory, rid: str) -> list[dict[str, Any]]:
    return [f for f in hf.server.ec2.describe_fleets()["Fleets"]
            if tags_of(f).get(REQUEST_TAG) == rid]


def check_typed_attributes(template: dict[str, Any]) -> None:
    attrs = template["attributes"]
    for name, pair in attrs.items():
        assert isinstance(pair, list) and len(pair) == 2, (name, pair)
        assert pair[0] in ("String", "Numeric", "Boolean"), (name, pair)
        assert isinstance(pair[1], str), (name, pair)
    assert attrs["type"] == ["String", "X86_64"]
    assert attrs["ncpus"] == ["Numeric", "2"]
    assert attrs["nram"] == ["Numeric", "8192"]


@pytest.mark.parametrize(("tid", "count"), [(RI, 2), (FLEET_OD, 3), (FLEET_SPOT, 2)])
def test_full_cycle(hf: HostFactory, tid: str, count: int) -> None:
    by_hand = tid == RI  # an admin at a shell: JSON on standard input, no -f
    before = hf.templates(stdin=by_hand)
    assert list(before) == [RI, FLEET_OD, FLEET_SPOT]  # file order
    for t in before.values():
        check_typed_attributes(t)  # typed pairs, also where the file wrote plain values
        assert t["maxNumber"] == MAX[t["templateId"]]
        assert t["availableNumber"] == t["maxNumber"]

    rid = hf.request(tid, count, stdin=by_hand)
    done = hf.wait(rid)
    assert done["status"] == "complete", done
    machines = done["machines"]
    ec2 = hf.server.instances()
    assert {m["machineId"] for m in machines} == set(ec2)  # all we launched, nothing else
    launched = [ec2[m["machineId"]] for m in machines]
    got = units_of(launched)
    assert got >= count
    if tid == RI:
        assert len(machines) == count
    assert len({m["name"] for m in machines}) == len(machines)
    for m in machines:
        inst = ec2[m["machineId"]]
        assert m["result"] == "succeed" and m["status"] == "running", m
        assert m["name"] == inst["PrivateDnsName"] and m["name"]
        assert m["privateIpAddress"] == inst["PrivateIpAddress"]
        assert isinstance(m["launchtime"], int)
        assert m["launchtime"] == int(inst["LaunchTime"].timestamp())
        assert isinstance(m["instanceTags"], str)
        assert f"{REQUEST_TAG}={rid}" in m["instanceTags"].split(";")
        assert m["priceType"] == ("spot" if tid == FLEET_SPOT else "ondemand")
        tags = tags_of(inst)
        assert tags[PROVIDER_TAG] == PROVIDER
        assert tags[REQUEST_TAG] == rid
        assert tags[TEMPLATE_TAG] == tid
        assert INSTANCE_TAGS.items() <= tags.items()

    assert hf.templates()[tid]["availableNumber"] == MAX[tid] - got
    calls = hf.server.calls()
    if tid == RI:
        assert not calls.get("CreateFleet") and not calls.get("CreateLaunchTemplate")
    else:
        fleets = fleets_of(hf, rid)
        assert len(fleets) == 1
        fleet_tags = tags_of(fleets[0])
        assert fleet_tags[PROVIDER_TAG] == PROVIDER and fleet_tags[TEMPLATE_TAG] == tid
    assert hf.server.ec2.describe_launch_templates()["LaunchTemplates"] == []

    ret = hf.give_back(machines)
    gone = hf.wait(ret)
    assert gone["status"] == "complete", gone
    assert {m["machineId"] for m in gone["machines"]} == set(ec2)
    assert all(m["result"] == "succeed" for m in gone["machines"]), gone
    after = hf.server.instances()
    for iid in ec2:
        assert after[iid]["State"]["Name"] == "terminated"
        assert tags_of(after[iid])[RETURN_TAG] == ret
    assert hf.templates()[tid]["availableNumber"] == MAX[tid]
    if tid != RI:
        states = [f["FleetState"] for f in fleets_of(hf, rid)]
        assert all(s in ("deleted", "deleted_terminating") for s in states), states
    assert hf.server.ec2.describe_launch_templates()["LaunchTemplates"] == []
    assert hf.logged_calls() == hf.made  # one log line per call, saying how it ended


def test_weighted_request_counts_units(hf: HostFactory) -> None:
    rid = hf.request(FLEET_OD, 4)
    done = hf.wait(rid)
    assert done["status"] == "complete", done
    ec2 = hf.server.instances()
    assert {m["machineId"] for m in done["machines"]} == set(ec2)
    got = units_of(list(ec2.values()))
    assert got >= 4
    assert len(ec2) < got  # the sandbox mixes types here: the case that needs weights
    assert {m["instanceType"] for m in done["machines"]} <= set(WEIGHTS)
    assert hf.templates()[FLEET_OD]["availableNumber"] == 20 - got


def test_partial_return_and_its_retry(hf: HostFactory) -> None:
    rid = hf.request(RI, 3)
    machines = hf.wait(rid)["machines"]
    assert len(machines) == 3
    back, keep = machines[0], machines[1:]
    ret = hf.give_back([back])
    assert hf.wait(ret)["status"] == "complete"

    ec2 = hf.server.instances()
    assert ec2[back["machineId"]]["State"]["Name"] == "terminated"
    for m in keep:
        assert ec2[m["machineId"]]["State"]["Name"] == "running"
        assert RETURN_TAG not in tags_of(ec2[m["machineId"]])
    status = {m["machineId"]: m for m in hf.status(rid)[0]["machines"]}
    for m in keep:
        assert status[m["machineId"]]["result"] == "succeed"
        assert status[m["machineId"]]["status"] == "running"
    assert hf.templates()[RI]["availableNumber"] == 10 - 2

    # HostFactory retries the same return (its first answer got lost, say)
    terminations = hf.server.calls().get("TerminateInstances", 0)
    again = hf.give_back([back])
    assert again != ret
    answer = hf.wait(again)
    assert answer["status"] == "complete", answer
    assert [m["machineId"] for m in answer["machines"]] == [back["machineId"]]
    assert answer["machines"][0]["result"] == "succeed"
    assert hf.server.calls().get("TerminateInstances", 0) == terminations
    ec2 = hf.server.instances()
    assert [ec2[m["machineId"]]["State"]["Name"] for m in keep] == ["running", "running"]
    assert hf.templates()[RI]["availableNumber"] == 10 - 2
    assert hf.logged_calls() == hf.made
