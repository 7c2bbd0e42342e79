"""launch_spec.py: a normalised template -> the exact parameters EC2 receives."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from hostfactory_aws import templates
from hostfactory_aws.cloud import launch_spec

AMI = "ami-0123456789abcdef0"
TAGS = {"hostfactory:provider": "awsinst", "hostfactory:requestId": "req-1",
        "hostfactory:templateId": "T1"}


def norm(tmp_path: Any, **fields: Any) -> dict[str, Any]:
    tpl: dict[str, Any] = {"templateId": "T1", "maxNumber": 10, "imageId": AMI,
                           "vmType": "m5.large"}
    tpl.update(fields)
    if "vmTypes" in fields:
        del tpl["vmType"]
    return templates.normalise(tpl, str(tmp_path))


def common(t: dict[str, Any], root: str | None = "/dev/xvda") -> dict[str, Any]:
    return launch_spec.instance_common(t, AMI, root, launch_spec.resource_tags(t, TAGS))


def tag_map(spec: dict[str, Any]) -> dict[str, str]:
    return {x["Key"]: x["Value"] for x in spec["Tags"]}


# --- RunInstances ------------------------------------------------------------------------

def test_run_instances_params_on_demand(tmp_path: Any) -> None:
    t = norm(tmp_path, subnetId="subnet-a,subnet-b", securityGroupIds=["sg-1", "sg-2"],
             keyName="grid", instanceTags="Project=grid")
    p = launch_spec.run_instances_params(t, common(t), 7, "subnet-b", "req-1-0", "#!/bin/sh")
    assert p["MinCount"] == 1 and p["MaxCount"] == 7
    assert p["ClientToken"] == "req-1-0"
    assert p["ImageId"] == AMI
    assert p["InstanceType"] == "m5.large"
    assert p["SubnetId"] == "subnet-b"
    assert p["SecurityGroupIds"] == ["sg-1", "sg-2"]
    assert p["KeyName"] == "grid"
    assert p["UserData"] == "#!/bin/sh"  # boto3 base64-encodes RunInstances' user data
    assert "InstanceMarketOptions" not in p
    specs = {s["ResourceType"]: tag_map(s) for s in p["TagSpecifications"]}
    assert set(specs) == {"instance", "volume"}
    for tags in specs.values():
        assert tags == {**TAGS, "Project": "grid"}


def test_run_instances_spot_with_max_price(tmp_path: Any) -> None:
    t = norm(tmp_path, priceType="spot", maxSpotPrice=0.0500)
    p = launch_spec.run_instances_params(t, common(t), 1, None, "tok", None)
    assert p["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {"SpotInstanceType": "one-time",
                        "InstanceInterruptionBehavior": "terminate", "MaxPrice": "0.05"}}
    assert "SubnetId" not in p and "UserData" not in p and "SecurityGroupIds" not in p


def test_run_instances_spot_without_max_price(tmp_path: Any) -> None:
    t = norm(tmp_path, priceType="spot")
    p = launch_spec.run_instances_params(t, common(t), 1, None, "tok", None)
    assert "MaxPrice" not in p["InstanceMarketOptions"]["SpotOptions"]


def test_run_instances_from_launch_template(tmp_path: Any) -> None:
    t = templates.normalise({"templateId": "LT", "maxNumber": 5,
                             "launchTemplateId": "lt-0123456789abcdef0"}, str(tmp_path))
    c = launch_spec.instance_common(t, None, None, launch_spec.resource_tags(t, TAGS))
    p = launch_spec.run_instances_params(t, c, 3, None, "tok", None)
    assert p["LaunchTemplate"] == {"LaunchTemplateId": "lt-0123456789abcdef0",
                                   "Version": "$Default"}
    assert "ImageId" not in p and "InstanceType" not in p
    t["launchTemplateVersion"] = 4
    assert launch_spec.launch_template_ref(t)["Version"] == "4"


def test_user_data_from_script(tmp_path: Any) -> None:
    (tmp_path / "boot.sh").write_text("#!/bin/sh\necho ready\n")
    assert launch_spec.user_data(norm(tmp_path, userDataScript="boot.sh")) == \
        "#!/bin/sh\necho ready\n"
    assert launch_spec.user_data(norm(tmp_path, userData="inline")) == "inline"
    assert launch_spec.user_data(norm(tmp_path)) is None


# --- block devices, profile, placement ---------------------------------------------------

def test_no_root_size_no_block_devices(tmp_path: Any) -> None:
    t = norm(tmp_path)
    assert launch_spec.block_devices(t, "/dev/xvda") == []
    assert "BlockDeviceMappings" not in common(t)


def test_root_volume(tmp_path: Any) -> None:
    t = norm(tmp_path, rootDeviceVolumeSize=50)
    assert launch_spec.block_devices(t, "/dev/sda1") == [{
        "DeviceName": "/dev/sda1",
        "Ebs": {"VolumeSize": 50, "DeleteOnTermination": True, "VolumeType": "gp3"}}]
    assert launch_spec.block_devices(t, None) == []


def test_root_volume_with_iops_and_encryption(tmp_path: Any) -> None:
    t = norm(tmp_path, rootDeviceVolumeSize=100, volumeType="io2", iops=5000, encrypted=True)
    ebs = launch_spec.block_devices(t, "/dev/xvda")[0]["Ebs"]
    assert ebs == {"VolumeSize": 100, "DeleteOnTermination": True, "VolumeType": "io2",
                   "Iops": 5000, "Encrypted": True}
    assert common(t)["BlockDeviceMappings"][0]["Ebs"] == ebs


@pytest.mark.parametrize("profile, expected", [
    ("arn:aws:iam::123456789012:instance-profile/compute",
     {"Arn": "arn:aws:iam::123456789012:instance-profile/compute"}),
    ("compute", {"Name": "compute"}),
])
def test_instance_profile_arn_or_name(tmp_path: Any, profile: str,
                                      expected: dict[str, str]) -> None:
    assert common(norm(tmp_path, instanceProfile=profile))["IamInstanceProfile"] == expected


def test_placement_and_ebs_optimized(tmp_path: Any) -> None:
    c = common(norm(tmp_path, placementGroupName="pg", tenancy="dedicated", ebsOptimized=True))
    assert c["Placement"] == {"GroupName": "pg", "Tenancy": "dedicated"}
    assert c["EbsOptimized"] is True
    assert "Placement" not in common(norm(tmp_path))


def test_our_tags_win_over_instance_tags() -> None:
    t = {"instanceTagsMap": {"Project": "grid", "hostfactory:requestId": "forged"}}
    assert launch_spec.resource_tags(t, TAGS)["hostfactory:requestId"] == "req-1"


# --- fleets ------------------------------------------------------------------------------

def test_fleet_overrides_types_by_subnets_with_weights(tmp_path: Any) -> None:
    t = norm(tmp_path, vmTypes={"m5.xlarge": 1, "m5.2xlarge": 2}, subnetId=["s-a", "s-b"])
    assert launch_spec.fleet_overrides(t) == [
        {"InstanceType": "m5.xlarge", "WeightedCapacity": 1.0, "SubnetId": "s-a"},
        {"InstanceType": "m5.xlarge", "WeightedCapacity": 1.0, "SubnetId": "s-b"},
        {"InstanceType": "m5.2xlarge", "WeightedCapacity": 2.0, "SubnetId": "s-a"},
        {"InstanceType": "m5.2xlarge", "WeightedCapacity": 2.0, "SubnetId": "s-b"},
    ]


def test_fleet_overrides_without_subnets_and_with_price_cap(tmp_path: Any) -> None:
    t = norm(tmp_path, vmTypes=["m5.large", "m5a.large"], priceType="spot",
             maxSpotPrice=0.12340)
    assert launch_spec.fleet_overrides(t) == [
        {"InstanceType": "m5.large", "WeightedCapacity": 1.0, "MaxPrice": "0.1234"},
        {"InstanceType": "m5a.large", "WeightedCapacity": 1.0, "MaxPrice": "0.1234"},
    ]


def test_capacity_split_ondemand_and_spot(tmp_path: Any) -> None:
    assert launch_spec.capacity_split(norm(tmp_path), 10) == {
        "TotalTargetCapacity": 10, "DefaultTargetCapacityType": "on-demand",
        "OnDemandTargetCapacity": 10}
    assert launch_spec.capacity_split(norm(tmp_path, priceType="spot"), 10) == {
        "TotalTargetCapacity": 10, "DefaultTargetCapacityType": "spot",
        "SpotTargetCapacity": 10}


@pytest.mark.parametrize("percent, units, on_demand", [
    (25, 10, 3), (25, 8, 2), (1, 10, 1), (0, 10, 0), (100, 7, 7), (50, 3, 2)])
def test_capacity_split_heterogeneous_rounds_on_demand_up(
        tmp_path: Any, percent: int, units: int, on_demand: int) -> None:
    t = norm(tmp_path, providerApi="EC2Fleet", priceType="heterogeneous",
             percentOnDemand=percent)
    spec = launch_spec.capacity_split(t, units)
    assert spec == {"TotalTargetCapacity": units, "DefaultTargetCapacityType": "spot",
                    "OnDemandTargetCapacity": on_demand,
                    "SpotTargetCapacity": units - on_demand}


def test_launch_template_data(tmp_path: Any) -> None:
    t = norm(tmp_path, vmTypes={"m5.large": 1, "m5a.large": 1}, securityGroupIds="sg-1",
             rootDeviceVolumeSize=40, instanceTags="Project=grid")
    data = launch_spec.launch_template_data(t, common(t), "#!/bin/bash\necho é\n")
    assert base64.b64decode(data["UserData"]).decode("utf-8") == "#!/bin/bash\necho é\n"
    assert data["SecurityGroupIds"] == ["sg-1"]
    assert data["ImageId"] == AMI
    assert data["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 40
    assert {s["ResourceType"] for s in data["TagSpecifications"]} == {"instance", "volume"}
    assert tag_map(data["TagSpecifications"][0]) == {**TAGS, "Project": "grid"}
    # type, subnet and market belong to the fleet call, not to the template
    for key in ("InstanceType", "SubnetId", "InstanceMarketOptions", "MinCount"):
        assert key not in data


def test_launch_template_data_without_user_data(tmp_path: Any) -> None:
    t = norm(tmp_path)
    assert "UserData" not in launch_spec.launch_template_data(t, common(t), None)
