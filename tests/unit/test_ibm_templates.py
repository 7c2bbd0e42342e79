"""Issue 13, pure: IBM's template keys read with IBM's meaning, and the corpus loads unchanged.

No AWS here: templates.py normalises, launch_spec.py builds the EC2 parameters.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hostfactory_aws import config, templates
from hostfactory_aws.cloud import launch_spec
from hostfactory_aws.errors import ConfigError

CORPUS = Path(__file__).resolve().parents[1] / "data" / "ibm"
AMI = "ami-0123456789abcdef0"


def norm(tmp_path: Path, **fields: Any) -> dict[str, Any]:
    tpl = {"templateId": "T", "maxNumber": 10, "imageId": AMI, "vmType": "m5.large", **fields}
    if "vmTypes" in fields:
        tpl.pop("vmType")
    return templates.normalise(templates.coerce_numeric_strings(
        tpl, templates.INT_FIELDS, templates.FLOAT_FIELDS), str(tmp_path))


def test_corpus_configs_load_unchanged_with_no_unknown_key() -> None:
    for name in ("symphony/awsprov_config.json", "symphony/awsprov_config_linux.json",
                 "lsf/awsprov_config.json"):
        cfg = config.parse_config(json.loads((CORPUS / name).read_text()), name, env={})
        assert cfg["_unknown"] == [], name
    linux = config.parse_config(json.loads(
        (CORPUS / "symphony/awsprov_config_linux.json").read_text()), "x", env={})
    assert linux["AWS_PROXY_HOST"] == "proxyhost" and linux["AWS_REQUEST_RETRY_ATTEMPTS"] == 0


@pytest.mark.parametrize("name", ["symphony/awsprov_templates.json",
                                  "lsf/awsprov_templates.json"])
def test_corpus_templates_have_only_known_keys(name: str, tmp_path: Path) -> None:
    raw = json.loads((CORPUS / name).read_text())
    for t in raw["templates"]:  # ids that must exist: files and AMIs of IBM's account
        if "userDataScript" in t:
            t["userDataScript"] = str(tmp_path / "boot.sh")
        t["imageId"] = AMI
    (tmp_path / "boot.sh").write_text("#!/bin/sh\n")
    found = templates.parse_template_file(raw, str(tmp_path / "awsprov_templates.json"))
    assert found.problems() == []
    assert [t["templateId"] for t in found.good] == [t["templateId"] for t in raw["templates"]]


def test_symphony_api_rule_and_spot_options(tmp_path: Path) -> None:
    spot = norm(tmp_path, vmTypes={"t2.medium": 1, "a1.xlarge": 2}, priceType="spot",
                fleetRole="arn:role", allocationStrategy="lowestPrice", poolsCount=1)
    assert (spot["providerApi"], spot["fleetType"]) == ("SpotFleet", "request")
    assert launch_spec.spot_pools(spot) == {"InstancePoolsToUseCount": 1}
    assert launch_spec.spot_pools(norm(tmp_path, priceType="spot", poolsCount=2)) == {}
    hetero = norm(tmp_path, vmTypes={"t2.medium": 1, "a1.xlarge": 2}, priceType="heterogeneous",
                  vmTypesOnDemand={"t2.medium": 1}, fleetRole="arn:role")
    assert (hetero["providerApi"], hetero["fleetType"], hetero["topUpOnDemand"]) == (
        "EC2Fleet", "instant", True)
    od = launch_spec.top_up_template(hetero)
    assert od["vmTypes"] == {"t2.medium": 1.0} and od["priceType"] == "ondemand"
    with pytest.raises(ConfigError, match="heterogeneous.*instant EC2 Fleet"):
        norm(tmp_path, vmTypes=["m5.large"], priceType="heterogeneous",
             providerApi="SpotFleet", fleetRole="r")


def test_percent_on_demand_with_spot_and_priorities(tmp_path: Path) -> None:
    t = norm(tmp_path, vmTypes={"m5.large": 1, "m5.xlarge": 2}, priceType="spot",
             percentOnDemand=25, vmTypesPriority={"m5.xlarge": 1, "m5.large": 2},
             allocationStrategyOnDemand="prioritized")
    assert t["providerApi"] == "EC2Fleet"
    assert launch_spec.capacity_split(t, 10)["OnDemandTargetCapacity"] == 3
    assert {o["InstanceType"]: o["Priority"] for o in launch_spec.fleet_overrides(t)} == {
        "m5.large": 2.0, "m5.xlarge": 1.0}
    with pytest.raises(ConfigError, match="vmTypesPriority"):
        norm(tmp_path, vmTypes=["m5.large"], priceType="spot", vmTypesPriority={"c5.large": 1})


def test_lsf_template_keys(tmp_path: Path) -> None:
    t = norm(tmp_path, vmType="t2.micro, t3.micro", spotPrice="0.05", securityGroupIds=[""],
             maxNumber=0, interfaceType="efa", efaCount=2, onDemandTargetCapacityRatio=0.3,
             requestValidity="00:45", durationInHours=2, ttl=60, gpuextend="x",
             attributes={"ncpus": ["Numeric", "[1:4]"], "awshost": ["Boolean", "1"]})
    assert t["vmTypes"] == {"t2.micro": 1.0, "t3.micro": 1.0}
    assert (t["priceType"], t["maxSpotPrice"], t["providerApi"]) == ("spot", 0.05, "EC2Fleet")
    assert t["securityGroupIds"] == [] and t["spotFleetRequestExpiry"] == 45
    assert t["attributes"]["ncpus"] == ["Numeric", "[1:4]"]
    assert launch_spec.capacity_split(t, 10)["OnDemandTargetCapacity"] == 3
    assert t["noEffect"] == ["durationInHours", "gpuextend", "ttl"]
    assert templates.hf_template(t, 0, t["attributes"])["availableNumber"] == 0
    nics = launch_spec.network_interfaces(t, "subnet-1")
    assert [(n["NetworkCardIndex"], n["DeviceIndex"], n["InterfaceType"]) for n in nics] == [
        (0, 0, "efa"), (1, 1, "efa")]
    ri = launch_spec.run_instances_params(
        norm(tmp_path, interfaceType="efa", securityGroupIds=["sg-1"]), {}, 1, "subnet-1",
        "tok", None)
    assert "SubnetId" not in ri and "SecurityGroupIds" not in ri
    assert ri["NetworkInterfaces"][0]["Groups"] == ["sg-1"]
    with pytest.raises(ConfigError, match="Numeric"):
        norm(tmp_path, attributes={"ncpus": ["Numeric", "many"]})


@pytest.mark.parametrize("tags, expect", [
    ("group=project1", {"group": "project1"}),
    ("a=1;b=2", {"a": "1", "b": "2"}),
    ("a=1,b=2", {"a": "1", "b": "2"}),
    ({"a": "1", "b": 2}, {"a": "1", "b": "2"}),
    ("a=1;aws:cloudformation=x", {"a": "1"}),
])
def test_instance_tags_both_forms_and_aws_prefix(tmp_path: Path, tags: Any,
                                                 expect: dict[str, str]) -> None:
    t = norm(tmp_path, instanceTags=tags)
    assert t["instanceTagsMap"] == expect
    assert t["skippedTags"] == (["aws:cloudformation"] if "aws:" in str(tags) else [])


def test_ec2_fleet_config_placeholders(tmp_path: Path) -> None:
    (tmp_path / "fleet.json").write_text((CORPUS / "lsf" / "ec2-fleet-config.json").read_text())
    t = norm(tmp_path, ec2FleetConfig="fleet.json", onDemandTargetCapacityRatio=0.25)
    assert (t["providerApi"], t["fleetType"]) == ("EC2Fleet", "instant")
    spec = launch_spec.fleet_config_params(t, 5)["TargetCapacitySpecification"]
    assert (spec["TotalTargetCapacity"], spec["OnDemandTargetCapacity"],
            spec["SpotTargetCapacity"]) == (5, 2, 3)  # IBM rounds the on-demand part up
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="ec2FleetConfig"):
        norm(tmp_path, ec2FleetConfig="bad.json")


def test_lsf_boot_script_exports(tmp_path: Path) -> None:
    t = norm(tmp_path, userData="zone=us_west_2a;FLAG")
    exports = launch_spec.lsf_exports(t, {"jobId": "it's"}, "default", "awsinst",
                                      "-x clusterName=c1 -y")
    assert list(exports) == ["zone", "FLAG", "jobId", "rc_account", "template_id",
                             "clustername", "providerName"]
    script = launch_spec.user_data({**t, launch_spec.LSF_EXPORTS: exports})
    assert script is not None and "%EXPORT_USER_DATA%" not in script
    assert "export zone='us_west_2a'\nexport FLAG\nexport jobId='it'\\''s'\n" in script
    proc = subprocess.run(["sh", "-n", "-c", script], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_no_effect_keys_are_noted_once_unknown_keys_every_load(tmp_path: Path,
                                                               caplog: Any) -> None:
    import logging

    path = tmp_path / "awsprov_templates.json"
    path.write_text(json.dumps({"templates": [
        {"templateId": "T", "maxNumber": 1, "imageId": AMI, "vmType": "m5.large", "ttl": 5,
         "keyNmae": "k"}]}))
    cache = str(tmp_path / "validated.json")
    caplog.set_level(logging.INFO)
    for _ in range(3):
        templates.log_problems(templates.load_template_file(str(path), cache), cache)
    text = [r.getMessage() for r in caplog.records]
    assert sum("ttl: accepted, no effect here" in m for m in text) == 1
    assert sum("unknown field 'keyNmae' (did you mean 'keyName'?)" in m for m in text) == 3
