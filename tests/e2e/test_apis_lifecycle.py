"""EC2 Fleet (request, maintain), Spot Fleet (request, maintain) and ASG through the scripts.

Each API's whole life as HostFactory drives it, checked against what EC2 (moto's server)
holds: the request completes; a partial return leaves the rest running and the fleet or
group in place with its capacity lowered by exactly what was returned, once, even when the
return is retried; the last machine returned takes the fleet/group and the per-request
launch template with it. Resources are tagged at creation.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from tests.support.hostfactory import (
    INSTANCE_TAGS,
    PROVIDER,
    PROVIDER_TAG,
    REQUEST_TAG,
    RETURN_TAG,
    TEMPLATE_TAG,
    HostFactory,
    tags_of,
)

FLEET_ROLE = "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role"
EF_REQUEST, EF_MAINTAIN = "EF-Request", "EF-Maintain"
SF_REQUEST, SF_MAINTAIN = "SF-Request", "SF-Maintain"
ASG_ONE, ASG_MIXED = "ASG-One", "ASG-Mixed"
EF_WEIGHTED = "EF-Weighted"
WEIGHTS = {"m5.large": 1, "m5.xlarge": 2}


def api_templates(hf: HostFactory) -> list[dict[str, Any]]:
    """One template per API and fleet type, over the sandbox's AMI and subnets."""
    base = {"maxNumber": 20, "imageId": hf.image_id, "subnetId": hf.subnets,
            "attributes": {"type": "X86_64", "ncpus": 2, "nram": 8192},
            "instanceTags": ";".join(f"{k}={v}" for k, v in INSTANCE_TAGS.items())}
    spot = {"priceType": "spot", "vmTypes": {"m5.large": 1}}
    return [
        {**base, "templateId": EF_REQUEST, "providerApi": "EC2Fleet", "fleetType": "request",
         "vmTypes": {"m5.large": 1}},
        {**base, **spot, "templateId": EF_MAINTAIN, "providerApi": "EC2Fleet",
         "fleetType": "maintain"},
        {**base, **spot, "templateId": SF_REQUEST, "providerApi": "SpotFleet",
         "fleetType": "request", "fleetRole": FLEET_ROLE},
        {**base, **spot, "templateId": SF_MAINTAIN, "providerApi": "SpotFleet",
         "fleetType": "maintain", "fleetRole": FLEET_ROLE},
        {**base, "templateId": ASG_ONE, "providerApi": "ASG", "vmType": "m5.large"},
        {**base, "templateId": ASG_MIXED, "providerApi": "ASG",
         "vmTypes": {"m5.large": 1, "m5.xlarge": 1}},
        # one subnet, diversified: moto then mixes the types (else it takes the first one)
        {**base, "templateId": EF_WEIGHTED, "providerApi": "EC2Fleet", "fleetType": "request",
         "vmTypes": dict(WEIGHTS), "subnetId": hf.subnets[0],
         "allocationStrategy": "diversified"},
    ]


def use_api_templates(hf: HostFactory) -> None:
    hf.write_templates(api_templates(hf))


@functools.cache
def _autoscaling(url: str) -> Any:
    import boto3

    return boto3.client("autoscaling", region_name="us-east-1", endpoint_url=url,
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        aws_session_token="testing")


def autoscaling(hf: HostFactory) -> Any:
    """The test's own Auto Scaling client on the moto server (made once: ~0.3 s each)."""
    return _autoscaling(hf.server.url)


class Owner:
    """The fleet, Spot Fleet request or group behind one create request, as AWS shows it."""

    def __init__(self, hf: HostFactory, tid: str, rid: str) -> None:
        self.hf, self.tid, self.rid = hf, tid, rid
        self.api = "ASG" if tid.startswith("ASG") else "SpotFleet" if tid.startswith(
            "SF") else "EC2Fleet"

    def get(self) -> dict[str, Any] | None:
        """The resource found by its request-id tag (ASG: by its name), None if gone."""
        ec2 = self.hf.server.ec2
        if self.api == "EC2Fleet":
            mine = [f for f in ec2.describe_fleets()["Fleets"]
                    if tags_of(f).get(REQUEST_TAG) == self.rid]
        elif self.api == "SpotFleet":
            mine = [c for c in ec2.describe_spot_fleet_requests()["SpotFleetRequestConfigs"]
                    if tags_of(c).get(REQUEST_TAG) == self.rid]
        else:
            mine = autoscaling(self.hf).describe_auto_scaling_groups(
                AutoScalingGroupNames=[f"hf-{self.rid}"])["AutoScalingGroups"]
        assert len(mine) <= 1, mine
        return mine[0] if mine else None

    def state(self) -> str:
        res = self.get()
        if res is None:
            return "gone"
        if self.api == "EC2Fleet":
            return res["FleetState"]
        if self.api == "SpotFleet":
            return res["SpotFleetRequestState"]
        return res.get("Status") or "active"

    def capacity(self) -> int:
        """Target capacity (fleets) or desired capacity (groups)."""
        res = self.get()
        assert res is not None, f"{self.api} of {self.rid} is gone"
        if self.api == "EC2Fleet":
            return int(res["TargetCapacitySpecification"]["TotalTargetCapacity"])
        if self.api == "SpotFleet":
            return int(res["SpotFleetRequestConfig"]["TargetCapacity"])
        return int(res["DesiredCapacity"])

    def tags(self) -> dict[str, str]:
        res = self.get()
        assert res is not None
        if self.api == "ASG":
            return {t["Key"]: t["Value"] for t in res["Tags"]}
        return tags_of(res)


def launch_templates(hf: HostFactory, rid: str) -> list[dict[str, Any]]:
    return [lt for lt in hf.server.ec2.describe_launch_templates()["LaunchTemplates"]
            if lt["LaunchTemplateName"] == f"hf-{rid}"]


def check_tags(hf: HostFactory, tid: str, rid: str, owner: Owner,
               instances: dict[str, dict[str, Any]]) -> None:
    """Provider, request and template tags plus instanceTags on everything made for rid."""
    ours = {PROVIDER_TAG: PROVIDER, REQUEST_TAG: rid, TEMPLATE_TAG: tid, **INSTANCE_TAGS}
    assert ours.items() <= owner.tags().items(), owner.tags()
    (lt,) = launch_templates(hf, rid)
    assert ours.items() <= tags_of(lt).items()
    data = hf.server.ec2.describe_launch_template_versions(
        LaunchTemplateId=lt["LaunchTemplateId"])["LaunchTemplateVersions"][0][
        "LaunchTemplateData"]
    specs = {s["ResourceType"]: tags_of(s) for s in data["TagSpecifications"]}
    assert ours.items() <= specs["instance"].items() and ours.items() <= specs["volume"].items()
    for inst in instances.values():
        assert ours.items() <= tags_of(inst).items(), inst["InstanceId"]
    # moto tags fleet-launched volumes from the launch template; its ASG launches do not
    # (the template's volume tag spec, checked above, is what EC2 applies there)
    if owner.api != "ASG":
        volumes = hf.server.ec2.describe_volumes(Filters=[
            {"Name": "attachment.instance-id", "Values": list(instances)}])["Volumes"]
        assert len(volumes) == len(instances)
        for vol in volumes:
            assert ours.items() <= tags_of(vol).items(), vol["VolumeId"]


# (template, how the first attempt at a partial return fails: EC2 refuses the termination
# (the return answers the machine failed), or the call itself fails after the fleet let go
# of the machine, before (tag-lost) or after (throttled) it was tagged as returned, or the
# group refuses (group-busy); HostFactory then retries the return)
CASES = [
    (EF_REQUEST, "refused"),
    (EF_MAINTAIN, "throttled"),
    (SF_REQUEST, "refused"),
    (SF_MAINTAIN, "tag-lost"),
    (ASG_ONE, "group-busy"),
    (ASG_MIXED, "group-busy"),
]


def failing_return(hf: HostFactory, back: dict[str, Any], how: str) -> str | None:
    """A return of one machine whose termination fails; its id if the call answered one."""
    if how == "refused":
        hf.server.faults.add("TerminateInstances", code="UnauthorizedOperation", status=403)
        return hf.give_back([back])
    if how == "throttled":  # beyond botocore's retries: outcome unknown, the call fails
        action, code = "TerminateInstances", "RequestLimitExceeded"
        hf.server.faults.add(action, code=code, status=503, times=2)
    elif how == "tag-lost":
        action, code = "CreateTags", "UnauthorizedOperation"
        hf.server.faults.add(action, code=code, status=403)
    else:
        action, code = "DetachInstances", "ScalingActivityInProgress"
        hf.server.faults.add(action, code=code)
    status, answer = hf.call("requestReturnMachines", {"machines": [
        {"name": back["name"], "machineId": back["machineId"]}]})
    assert status == 1 and code in answer["message"], answer
    return None


@pytest.mark.parametrize(("tid", "how"), CASES)
def test_api_lifecycle(hf: HostFactory, tid: str, how: str) -> None:
    use_api_templates(hf)
    rid = hf.request(tid, 3)
    done = hf.wait(rid)
    assert done["status"] == "complete", done
    machines = done["machines"]
    ec2 = hf.server.instances()
    assert {m["machineId"] for m in machines} == set(ec2)
    assert len(machines) == 3
    assert all(m["result"] == "succeed" and m["status"] == "running" for m in machines)
    owner = Owner(hf, tid, rid)
    check_tags(hf, tid, rid, owner, ec2)
    request_kind = tid.endswith("Request")
    if request_kind:  # the request ended: the fleet stops trying, keeps its instances
        assert owner.state() in ("deleted_running", "cancelled_running"), owner.state()
    else:
        assert owner.state() in ("active", "submitted"), owner.state()
        assert owner.capacity() == 3

    # A partial return whose first attempt fails half way; HostFactory asks again.
    back, keep = machines[0], machines[1:]
    first = failing_return(hf, back, how)
    assert hf.server.instances()[back["machineId"]]["State"]["Name"] == "running"
    ret = hf.give_back([back])
    asked = [ret, rid] + ([first] if first else [])
    answers = {a["requestId"]: a for a in hf.status(*asked)}
    if first:
        assert answers[first]["status"] == "complete_with_error", answers[first]
        assert answers[first]["machines"][0]["result"] == "fail"
        assert "UnauthorizedOperation" in answers[first]["machines"][0]["message"]
    assert answers[ret]["status"] == "complete", answers[ret]
    assert answers[ret]["machines"][0]["result"] == "succeed"
    ec2 = hf.server.instances()
    assert ec2[back["machineId"]]["State"]["Name"] == "terminated"
    assert tags_of(ec2[back["machineId"]])[RETURN_TAG] == ret
    for m in keep:
        assert ec2[m["machineId"]]["State"]["Name"] == "running"
        assert RETURN_TAG not in tags_of(ec2[m["machineId"]])
    assert set(ec2) == {m["machineId"] for m in machines}  # nothing replaced the returned one
    kept = {m["machineId"]: m for m in answers[rid]["machines"]}
    assert all(kept[m["machineId"]]["result"] == "succeed" for m in keep)
    assert owner.state() not in ("gone", "deleted", "deleted_terminating")
    assert launch_templates(hf, rid)
    if not request_kind:  # lowered by exactly the one returned machine, retried or not
        assert owner.capacity() == 2

    # The rest goes back: capacity to zero first, then fleet/group and launch template go.
    last = hf.give_back(keep)
    if not request_kind:
        assert owner.capacity() == 0
    gone = hf.wait(last)
    assert gone["status"] == "complete", gone
    assert all(m["result"] == "succeed" for m in gone["machines"])
    assert all(i["State"]["Name"] == "terminated" for i in hf.server.instances().values())
    assert owner.state() in ("gone", "deleted", "deleted_terminating",
                             "cancelled_terminating", "cancelled", "Delete in progress")
    assert launch_templates(hf, rid) == []
