"""Every template of the shipped conf/awsprov_templates.json runs the whole HostFactory cycle.

The sample names AMIs, subnets and security groups of a real account; here they are swapped
for the sandbox's, and everything else (API, fleet type, price type, weights, strategies,
user data script) is used exactly as shipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.hostfactory import PROVIDER, REQUEST_TAG, ROOT, tags_of

SAMPLE = json.loads((ROOT / "conf" / "awsprov_templates.json").read_text())["templates"]
SANDBOX_ONLY = ("keyName", "instanceProfile")  # account objects the sandbox does not have


def localised(t: dict[str, Any], hf: Any, sg: str) -> dict[str, Any]:
    out = {k: v for k, v in t.items() if k not in SANDBOX_ONLY}
    out["imageId"] = hf.image_id
    out["subnetId"] = hf.subnets if isinstance(t.get("subnetId"), list) else hf.subnets[0]
    out["securityGroupIds"] = [sg]
    if "userDataScript" in t:
        out["userDataScript"] = str(ROOT / "conf" / t["userDataScript"])
    return out


def test_every_api_kind_is_in_the_sample() -> None:
    kinds = {(t.get("providerApi", "RunInstances"), t.get("fleetType")) for t in SAMPLE}
    assert kinds >= {("RunInstances", None), ("EC2Fleet", "instant"), ("EC2Fleet", "request"),
                     ("EC2Fleet", "maintain"), ("SpotFleet", "request"),
                     ("SpotFleet", "maintain"), ("ASG", None)}


@pytest.mark.parametrize("template", SAMPLE, ids=[t["templateId"] for t in SAMPLE])
def test_sample_template_full_cycle(hf: Any, template: dict[str, Any], tmp_path: Path) -> None:
    ec2 = hf.server.ec2
    sg = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    hf.write_templates([localised(template, hf, sg)])
    tid = template["templateId"]

    before = hf.templates()[tid]
    assert before["availableNumber"] == template["maxNumber"]
    rid = hf.request(tid, 2)
    done = hf.wait(rid)
    assert done["status"] == "complete", done
    machines = done["machines"]
    assert machines and all(m["result"] == "succeed" for m in machines)
    for inst in _instances(ec2, [m["machineId"] for m in machines]):
        tags = tags_of(inst)
        assert tags[REQUEST_TAG] == rid and tags["hostfactory:provider"] == PROVIDER
        for key, value in (x.split("=") for x in template.get("instanceTags", "").split(";")
                           if x):
            assert tags[key] == value
    assert hf.templates()[tid]["availableNumber"] < template["maxNumber"]

    ret = hf.give_back(machines)
    assert hf.wait(ret)["status"] == "complete"
    gone = _instances(ec2, [m["machineId"] for m in machines])
    assert {i["State"]["Name"] for i in gone} == {"terminated"}
    assert hf.templates()[tid]["availableNumber"] == template["maxNumber"]
    # nothing of the request is left behind: launch template, fleet, spot fleet, group
    lts = ec2.describe_launch_templates()["LaunchTemplates"]
    assert not [lt for lt in lts if lt["LaunchTemplateName"] == f"hf-{rid}"]
    live_fleets = [f for f in ec2.describe_fleets()["Fleets"]
                   if tags_of(f).get(REQUEST_TAG) == rid
                   and f["FleetState"] not in ("deleted", "deleted_terminating")]
    assert not live_fleets
    spot = [s for s in ec2.describe_spot_fleet_requests()["SpotFleetRequestConfigs"]
            if tags_of(s).get(REQUEST_TAG) == rid
            and s["SpotFleetRequestState"] in ("submitted", "active", "modifying")]
    assert not spot
    groups = boto3.client("autoscaling", region_name="us-east-1", endpoint_url=hf.server.url,
                          aws_access_key_id="testing", aws_secret_access_key="testing"
                          ).describe_auto_scaling_groups()
    assert not [g for g in groups["AutoScalingGroups"]
                if g["AutoScalingGroupName"] == f"hf-{rid}"]


def _instances(ec2: Any, ids: list[str]) -> list[dict[str, Any]]:
    resp = ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": ids}])
    return [i for r in resp["Reservations"] for i in r["Instances"]]
