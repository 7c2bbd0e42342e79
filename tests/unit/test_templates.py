"""templates.py: what the admin writes in awsprov_templates.json and what HostFactory reads back."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from hostfactory_aws import templates
from hostfactory_aws.errors import ConfigError

AMI = "ami-0123456789abcdef0"


def base(**extra: Any) -> dict[str, Any]:
    tpl: dict[str, Any] = {"templateId": "T1", "maxNumber": 10, "imageId": AMI,
                           "vmType": "m5.large"}
    tpl.update(extra)
    return tpl


@pytest.fixture
def tfile(tmp_path: Any) -> str:
    """Path of a templates file in a conf dir (it need not exist for parse_templates)."""
    return str(tmp_path / "awsprov_templates.json")


def parse(tfile: str, *tpls: dict[str, Any]) -> list[dict[str, Any]]:
    return templates.parse_templates({"templates": list(tpls)}, tfile)


def one(tfile: str, **extra: Any) -> dict[str, Any]:
    return parse(tfile, base(**extra))[0]


def error_of(tfile: str, *tpls: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as exc:
        parse(tfile, *tpls)
    return str(exc.value)


def assert_names(msg: str, tfile: str, template_id: str, field: str) -> None:
    """Every template error names the file, the template and the field."""
    assert tfile in msg
    assert f"template '{template_id}'" in msg
    assert f"{field}:" in msg or f"'{field}'" in msg


# --- attributes --------------------------------------------------------------------------

def test_plain_attributes_become_typed_pairs(tfile: str) -> None:
    t = one(tfile, attributes={"type": "X86_64", "ncpus": 2, "nram": 8192.0, "gpu": True,
                               "weight": 1.5, "zone": "a"})
    assert t["attributes"] == {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"],
                               "nram": ["Numeric", "8192"], "gpu": ["Boolean", "true"],
                               "weight": ["Numeric", "1.5"], "zone": ["String", "a"]}


def test_typed_attributes_keep_their_type_and_become_strings(tfile: str) -> None:
    t = one(tfile, attributes={"type": ["String", "X86_64"], "ncpus": ["Numeric", 4],
                               "nram": ["Numeric", "16384"], "spot": ["Boolean", False]})
    assert t["attributes"] == {"type": ["String", "X86_64"], "ncpus": ["Numeric", "4"],
                               "nram": ["Numeric", "16384"], "spot": ["Boolean", "false"]}
    for pair in t["attributes"].values():
        assert isinstance(pair[1], str)


def test_numeric_attribute_that_is_not_a_number_is_named(tfile: str) -> None:
    msg = error_of(tfile, base(attributes={"ncpus": ["Numeric", "two"]}))
    assert_names(msg, tfile, "T1", "attributes.ncpus")
    assert "'two'" in msg


def test_attribute_of_unknown_type_is_rejected(tfile: str) -> None:
    msg = error_of(tfile, base(attributes={"ncpus": ["Integer", "2"]}))
    assert_names(msg, tfile, "T1", "attributes.ncpus")


# --- numbers written as strings ----------------------------------------------------------

def test_numeric_strings_are_accepted(tfile: str) -> None:
    t = one(tfile, maxNumber="10", rootDeviceVolumeSize="50", volumeType="gp3", iops="3000")
    assert t["maxNumber"] == 10
    assert t["rootDeviceVolumeSize"] == 50
    assert t["iops"] == 3000


def test_numeric_string_minus_one_is_unlimited(tfile: str) -> None:
    assert one(tfile, maxNumber="-1")["maxNumber"] == -1


def test_max_spot_price_string_becomes_float(tfile: str) -> None:
    t = one(tfile, priceType="spot", maxSpotPrice="0.05")
    assert t["maxSpotPrice"] == pytest.approx(0.05)


def test_load_templates_reads_the_file(tfile: str) -> None:
    with open(tfile, "w") as fh:
        json.dump({"templates": [base(), base(templateId="T2")]}, fh)
    assert [t["templateId"] for t in templates.load_templates(tfile)] == ["T1", "T2"]


def test_load_templates_bad_json_names_the_file(tfile: str) -> None:
    with open(tfile, "w") as fh:
        fh.write('{"templates": [')
    with pytest.raises(ConfigError, match="not valid JSON") as exc:
        templates.load_templates(tfile)
    assert tfile in str(exc.value)


def test_missing_templates_file_is_named(tfile: str) -> None:
    with pytest.raises(ConfigError, match="cannot read") as exc:
        templates.load_templates(tfile)
    assert tfile in str(exc.value)


def test_file_order_is_kept(tfile: str) -> None:
    ids = ["Zeta", "alpha", "Mid-1", "b_2"]
    got = parse(tfile, *[base(templateId=i) for i in ids])
    assert [t["templateId"] for t in got] == ids


# --- vmType / vmTypes --------------------------------------------------------------------

def test_vmtype_becomes_weight_one(tfile: str) -> None:
    assert one(tfile)["vmTypes"] == {"m5.large": 1.0}


def test_vmtypes_map_keeps_weights_in_order(tfile: str) -> None:
    tpl = base(vmTypes={"m5.xlarge": 1, "m5.2xlarge": 2})
    del tpl["vmType"]
    t = parse(tfile, tpl)[0]
    assert t["vmTypes"] == {"m5.xlarge": 1.0, "m5.2xlarge": 2.0}
    assert list(t["vmTypes"]) == ["m5.xlarge", "m5.2xlarge"]


def test_vmtypes_list_means_equal_weights(tfile: str) -> None:
    tpl = base(vmTypes=["m5.large", "m5a.large", "m6i.large"])
    del tpl["vmType"]
    t = parse(tfile, tpl)[0]
    assert t["vmTypes"] == {"m5.large": 1.0, "m5a.large": 1.0, "m6i.large": 1.0}


def test_bad_instance_type_form_is_named(tfile: str) -> None:
    msg = error_of(tfile, base(vmType="M5 Large"))
    assert_names(msg, tfile, "T1", "vmType")


# --- subnets and security groups ---------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("subnet-a", ["subnet-a"]),
    ("subnet-a,subnet-b", ["subnet-a", "subnet-b"]),
    ("subnet-a, subnet-b ,", ["subnet-a", "subnet-b"]),
    (["subnet-a", "subnet-b", "subnet-c"], ["subnet-a", "subnet-b", "subnet-c"]),
])
def test_subnet_forms_become_subnet_ids(tfile: str, value: Any, expected: list[str]) -> None:
    assert one(tfile, subnetId=value)["subnetIds"] == expected


def test_no_subnet_is_an_empty_list(tfile: str) -> None:
    assert one(tfile)["subnetIds"] == []


def test_security_groups_string_or_list(tfile: str) -> None:
    assert one(tfile, securityGroupIds="sg-1,sg-2")["securityGroupIds"] == ["sg-1", "sg-2"]
    assert one(tfile, securityGroupIds=["sg-1"])["securityGroupIds"] == ["sg-1"]


def test_empty_subnet_list_is_rejected(tfile: str) -> None:
    msg = error_of(tfile, base(subnetId=[]))
    assert_names(msg, tfile, "T1", "subnetId")


# --- providerApi defaults ----------------------------------------------------------------

def test_single_type_defaults_to_run_instances(tfile: str) -> None:
    t = one(tfile)
    assert t["providerApi"] == "RunInstances"
    assert t["fleetType"] is None
    assert t["priceType"] == "ondemand"


def test_several_types_default_to_instant_ec2_fleet(tfile: str) -> None:
    tpl = base(vmTypes={"m5.large": 1, "m5a.large": 1})
    del tpl["vmType"]
    t = parse(tfile, tpl)[0]
    assert (t["providerApi"], t["fleetType"]) == ("EC2Fleet", "instant")


def test_one_weighted_type_defaults_to_ec2_fleet(tfile: str) -> None:
    tpl = base(vmTypes={"m5.2xlarge": 2})
    del tpl["vmType"]
    assert parse(tfile, tpl)[0]["providerApi"] == "EC2Fleet"


def test_explicit_ec2_fleet_gets_instant(tfile: str) -> None:
    t = one(tfile, providerApi="EC2Fleet")
    assert (t["providerApi"], t["fleetType"]) == ("EC2Fleet", "instant")


def test_allocation_strategies_become_aws_names(tfile: str) -> None:
    t = one(tfile, providerApi="EC2Fleet", priceType="spot",
            allocationStrategy="capacityOptimized", allocationStrategyOnDemand="prioritized")
    assert t["allocationStrategy"] == "capacity-optimized"
    assert t["allocationStrategyOnDemand"] == "prioritized"


# --- errors: each names the file, the template and the field -----------------------------

def test_unknown_field_gets_a_suggestion(tfile: str) -> None:
    tpl = base(maxNumbr=10)
    del tpl["maxNumber"]
    msg = error_of(tfile, tpl)
    assert_names(msg, tfile, "T1", "maxNumbr")
    assert "unknown field 'maxNumbr'" in msg
    assert "did you mean 'maxNumber'?" in msg


def test_unknown_field_far_from_any_gets_no_suggestion(tfile: str) -> None:
    msg = error_of(tfile, base(frobnicate=1))
    assert "unknown field 'frobnicate'" in msg
    assert "did you mean" not in msg


def test_wrong_type_is_named(tfile: str) -> None:
    msg = error_of(tfile, base(maxNumber="ten"))
    assert_names(msg, tfile, "T1", "maxNumber")
    assert "'ten'" in msg


def test_bad_template_id_pattern(tfile: str) -> None:
    msg = error_of(tfile, base(templateId="bad id!"))
    assert_names(msg, tfile, "bad id!", "templateId")


def test_template_id_longer_than_64_is_rejected(tfile: str) -> None:
    error_of(tfile, base(templateId="x" * 65))
    assert parse(tfile, base(templateId="x" * 64))[0]["templateId"] == "x" * 64


def test_template_without_id_is_named_by_position(tfile: str) -> None:
    tpl = base()
    del tpl["templateId"]
    msg = error_of(tfile, base(templateId="First"), tpl)
    assert "template #2" in msg
    assert "'templateId' is required" in msg


def test_duplicate_template_id(tfile: str) -> None:
    msg = error_of(tfile, base(), base(vmType="m5.xlarge"))
    assert_names(msg, tfile, "T1", "templateId")
    assert "used twice" in msg


def test_every_problem_is_reported_at_once(tfile: str) -> None:
    msg = error_of(tfile, base(templateId="A", maxNumber=-2),
                   base(templateId="B", iops=3000, rootDeviceVolumeSize=20, volumeType="gp2"))
    assert "template 'A': maxNumber:" in msg
    assert "template 'B': iops:" in msg


def test_vmtype_and_vmtypes_together(tfile: str) -> None:
    msg = error_of(tfile, base(vmTypes={"m5.xlarge": 1}))
    assert_names(msg, tfile, "T1", "vmType, vmTypes")


def test_vmtypes_with_run_instances(tfile: str) -> None:
    tpl = base(providerApi="RunInstances", vmTypes=["m5.large", "m5a.large"])
    del tpl["vmType"]
    msg = error_of(tfile, tpl)
    assert_names(msg, tfile, "T1", "vmTypes")
    assert "RunInstances" in msg


def test_heterogeneous_with_run_instances(tfile: str) -> None:
    msg = error_of(tfile, base(providerApi="RunInstances", priceType="heterogeneous"))
    assert_names(msg, tfile, "T1", "priceType")


def test_spot_fleet_without_role(tfile: str) -> None:
    msg = error_of(tfile, base(providerApi="SpotFleet"))
    assert_names(msg, tfile, "T1", "fleetRole")
    t = one(tfile, providerApi="SpotFleet", fleetRole="arn:aws:iam::1:role/fleet")
    assert (t["providerApi"], t["fleetType"]) == ("SpotFleet", "request")


def test_fleet_role_with_another_api_is_accepted(tfile: str) -> None:
    """IBM's files carry fleetRole on templates of any kind; only Spot Fleet uses it."""
    t = one(tfile, providerApi="EC2Fleet", fleetRole="arn:aws:iam::1:role/fleet")
    assert t["providerApi"] == "EC2Fleet"


@pytest.mark.parametrize("extra, field", [
    ({"providerApi": "SpotFleet", "fleetType": "instant", "fleetRole": "r"}, "fleetType"),
    ({"providerApi": "ASG", "fleetType": "maintain"}, "fleetType"),
    ({"providerApi": "EC2Fleet", "fleetType": "bogus"}, "fleetType"),
    ({"providerApi": "Lambda"}, "providerApi"),
])
def test_api_and_fleet_type_combinations(tfile: str, extra: dict[str, Any],
                                         field: str) -> None:
    msg = error_of(tfile, base(**extra))
    assert_names(msg, tfile, "T1", field)


def test_request_expiry_is_kept_for_waiting_fleets(tfile: str) -> None:
    t = one(tfile, providerApi="EC2Fleet", fleetType="request", spotFleetRequestExpiry=10)
    assert t["spotFleetRequestExpiry"] == 10
    assert one(tfile, requestValidity="01:30")["spotFleetRequestExpiry"] == 90


def test_fleet_type_with_run_instances(tfile: str) -> None:
    msg = error_of(tfile, base(providerApi="RunInstances", fleetType="instant"))
    assert_names(msg, tfile, "T1", "fleetType")


def test_percent_on_demand_needs_some_spot(tfile: str) -> None:
    msg = error_of(tfile, base(providerApi="EC2Fleet", percentOnDemand=20))
    assert_names(msg, tfile, "T1", "percentOnDemand")
    t = one(tfile, providerApi="EC2Fleet", priceType="heterogeneous", percentOnDemand=20)
    assert t["percentOnDemand"] == 20 and t["onDemandShare"] == 0.2
    t = one(tfile, providerApi="EC2Fleet", priceType="spot", percentOnDemand=20)  # IBM's form
    assert t["onDemandShare"] == 0.2 and not t["topUpOnDemand"]


def test_max_spot_price_with_ondemand(tfile: str) -> None:
    msg = error_of(tfile, base(maxSpotPrice=0.1))
    assert_names(msg, tfile, "T1", "maxSpotPrice")


def test_user_data_and_script_together(tfile: str) -> None:
    msg = error_of(tfile, base(userData="#!/bin/sh", userDataScript="boot.sh"))
    assert_names(msg, tfile, "T1", "userData, userDataScript")


def test_missing_user_data_script_is_looked_for_in_the_conf_dir(tfile: str) -> None:
    msg = error_of(tfile, base(userDataScript="boot.sh"))
    assert_names(msg, tfile, "T1", "userDataScript")
    assert os.path.join(os.path.dirname(tfile), "boot.sh") in msg


def test_user_data_script_relative_to_conf_dir_becomes_absolute(tfile: str) -> None:
    script = os.path.join(os.path.dirname(tfile), "boot.sh")
    with open(script, "w") as fh:
        fh.write("#!/bin/sh\necho hi\n")
    assert one(tfile, userDataScript="boot.sh")["userDataScript"] == script


@pytest.mark.parametrize("extra", [
    {"iops": 3000, "rootDeviceVolumeSize": 50, "volumeType": "gp2"},
    {"iops": 3000, "rootDeviceVolumeSize": 50},
])
def test_iops_needs_a_provisioned_volume_type(tfile: str, extra: dict[str, Any]) -> None:
    msg = error_of(tfile, base(**extra))
    assert_names(msg, tfile, "T1", "iops")


@pytest.mark.parametrize("vtype", ["io1", "io2", "gp3"])
def test_iops_with_provisioned_types_is_fine(tfile: str, vtype: str) -> None:
    assert one(tfile, iops=3000, rootDeviceVolumeSize=50, volumeType=vtype)["iops"] == 3000


def test_volume_type_needs_a_root_size(tfile: str) -> None:
    msg = error_of(tfile, base(volumeType="gp3"))
    assert_names(msg, tfile, "T1", "rootDeviceVolumeSize")


@pytest.mark.parametrize("key", ["hostfactory:provider", "hostfactory:requestId"])
def test_reserved_instance_tag_key(tfile: str, key: str) -> None:
    msg = error_of(tfile, base(instanceTags=f"Project=grid;{key}=mine"))
    assert_names(msg, tfile, "T1", "instanceTags")
    assert f"'{key}'" in msg


@pytest.mark.parametrize("text", ["Project", "Project=grid;=nokey", "a=1;justaword"])
def test_bad_instance_tags_form(tfile: str, text: str) -> None:
    msg = error_of(tfile, base(instanceTags=text))
    assert_names(msg, tfile, "T1", "instanceTags")
    assert "key=value" in msg


def test_instance_tags_become_a_map(tfile: str) -> None:
    t = one(tfile, instanceTags="Project=grid; CostCenter=hpc;")
    assert t["instanceTagsMap"] == {"Project": "grid", "CostCenter": "hpc"}


def test_max_number_zero_is_a_template_with_nothing_available(tfile: str) -> None:
    t = one(tfile, maxNumber=0)
    assert templates.hf_template(t, 0, t["attributes"])["availableNumber"] == 0


def test_max_number_below_minus_one(tfile: str) -> None:
    msg = error_of(tfile, base(maxNumber=-2))
    assert_names(msg, tfile, "T1", "maxNumber")


def test_missing_image_id(tfile: str) -> None:
    tpl = base()
    del tpl["imageId"]
    msg = error_of(tfile, tpl)
    assert_names(msg, tfile, "T1", "imageId")


def test_missing_instance_type(tfile: str) -> None:
    tpl = base()
    del tpl["vmType"]
    msg = error_of(tfile, tpl)
    assert_names(msg, tfile, "T1", "vmType")


def test_launch_template_may_stand_in_for_image_and_type(tfile: str) -> None:
    tpl = {"templateId": "LT", "maxNumber": 5, "launchTemplateId": "lt-0123456789abcdef0"}
    t = parse(tfile, tpl)[0]
    assert t["vmTypes"] == {}
    assert t["providerApi"] == "RunInstances"


def test_ssm_image_path_is_accepted(tfile: str) -> None:
    path = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    assert one(tfile, imageId=path)["imageId"] == path


def test_not_an_object(tfile: str) -> None:
    with pytest.raises(ConfigError) as exc:
        templates.parse_templates("templates", tfile)
    assert tfile in str(exc.value)


def test_templates_key_missing(tfile: str) -> None:
    with pytest.raises(ConfigError, match="'templates' is required"):
        templates.parse_templates({"template": []}, tfile)


# --- fill_attributes ---------------------------------------------------------------------

SPECS = {"m5.large": {"ncpus": 2, "ncores": 1, "nram": 8192, "arch": "X86_64"},
         "m6g.large": {"ncpus": 2, "ncores": 2, "nram": 8192, "arch": "ARM64"},
         "c5.xlarge": {"ncpus": 4, "ncores": 2, "nram": 8192, "arch": "X86_64"}}


def test_fill_from_instance_type(tfile: str) -> None:
    t = one(tfile)
    assert templates.needs_fill(t)
    assert templates.fill_attributes(t, SPECS) == {
        "type": ["String", "X86_64"], "ncpus": ["Numeric", "2"], "ncores": ["Numeric", "1"],
        "nram": ["Numeric", "8192"]}


def test_admins_values_win(tfile: str) -> None:
    t = one(tfile, vmType="m6g.large", attributes={"ncpus": ["Numeric", "1"], "type": "X86_64",
                                                   "zone": "east"})
    attrs = templates.fill_attributes(t, SPECS)
    assert attrs["ncpus"] == ["Numeric", "1"]
    assert attrs["type"] == ["String", "X86_64"]
    assert attrs["zone"] == ["String", "east"]
    assert attrs["nram"] == ["Numeric", "8192"]
    assert t["attributes"] == {"ncpus": ["Numeric", "1"], "type": ["String", "X86_64"],
                               "zone": ["String", "east"]}  # the template is not changed


def test_first_vmtype_speaks(tfile: str) -> None:
    tpl = base(vmTypes={"c5.xlarge": 1, "m6g.large": 1})
    del tpl["vmType"]
    attrs = templates.fill_attributes(parse(tfile, tpl)[0], SPECS)
    assert attrs["ncpus"] == ["Numeric", "4"]
    assert attrs["type"] == ["String", "X86_64"]


def test_lsf_uses_mem_not_nram(tfile: str) -> None:
    t = one(tfile, attributes={"type": "X86_64", "ncpus": 2, "nram": 8192})
    assert not templates.needs_fill(t)
    assert templates.needs_fill(t, mem_key="mem")
    attrs = templates.fill_attributes(t, SPECS, mem_key="mem")
    assert attrs["mem"] == ["Numeric", "8192"]


def test_complete_attributes_need_no_fill(tfile: str) -> None:
    t = one(tfile, attributes={"type": "X86_64", "ncpus": 2, "nram": 8192})
    assert not templates.needs_fill(t)


def test_unknown_spec_leaves_attributes_alone(tfile: str) -> None:
    t = one(tfile, vmType="x9.large", attributes={"ncpus": 3})
    assert templates.fill_attributes(t, SPECS) == {"ncpus": ["Numeric", "3"]}


# --- hf_template -------------------------------------------------------------------------

@pytest.mark.parametrize("held, available", [(0, 10), (3, 7), (2.5, 7), (10, 0), (12, 0)])
def test_available_number(tfile: str, held: float, available: int) -> None:
    out = templates.hf_template(one(tfile), held, {})
    assert out["availableNumber"] == available
    assert out["maxNumber"] == 10


def test_unlimited_template_has_no_available_number(tfile: str) -> None:
    out = templates.hf_template(one(tfile, maxNumber=-1), 50, {})
    assert out["maxNumber"] == -1
    assert "availableNumber" not in out


def test_hf_template_echoes_what_the_admin_wrote(tfile: str) -> None:
    t = one(tfile, subnetId="subnet-a,subnet-b", priceType="spot", userData="secret-token",
            instanceTags="Project=grid", attributes={"ncpus": 2})
    attrs = templates.fill_attributes(t, SPECS)
    out = templates.hf_template(t, 0, attrs)
    assert out["templateId"] == "T1"
    assert out["attributes"] == attrs
    assert out["imageId"] == AMI
    assert out["vmType"] == "m5.large"
    assert out["subnetId"] == "subnet-a,subnet-b"  # as written, not the normalised list
    assert out["priceType"] == "spot"
    assert "userData" not in out
    assert "secret-token" not in json.dumps(out)
    assert not [k for k in out if k.startswith("_") or k in ("subnetIds", "instanceTagsMap")]
    assert "providerApi" not in out  # not written by the admin, not invented


def test_hf_template_never_echoes_user_data_script(tfile: str) -> None:
    script = os.path.join(os.path.dirname(tfile), "boot.sh")
    with open(script, "w") as fh:
        fh.write("#!/bin/sh\n")
    out = templates.hf_template(one(tfile, userDataScript="boot.sh"), 0, {})
    assert "userDataScript" not in out and "userData" not in out


def test_by_id(tfile: str) -> None:
    tpls = parse(tfile, base(templateId="A"), base(templateId="B"))
    assert templates.by_id(tpls, "B") is tpls[1]
    assert templates.by_id(tpls, "C") is None


# --- the cache of schema checks that passed ----------------------------------------------

def test_remembered_pass_never_hides_a_later_error(tfile: str, tmp_path: Any) -> None:
    cache = str(tmp_path / "validated.json")
    good = {"templates": [base()]}
    assert templates.parse_templates(good, tfile, cache)[0]["templateId"] == "T1"
    with open(cache) as fh:
        assert len(json.load(fh)["sha256"]) == 1
    assert templates.parse_templates(good, tfile, cache)[0]["templateId"] == "T1"
    with pytest.raises(ConfigError, match="maxNumbr"):
        templates.parse_templates({"templates": [base(maxNumbr=3)]}, tfile, cache)


def test_unwritable_cache_only_means_checking_again(tfile: str, tmp_path: Any) -> None:
    cache = str(tmp_path / "no-such-dir" / "validated.json")
    assert templates.parse_templates({"templates": [base()]}, tfile, cache)
    assert not os.path.exists(cache)


def test_pending_timeout_per_template(tfile: str) -> None:
    assert one(tfile, instancePendingTimeoutSec="1200")["instancePendingTimeoutSec"] == 1200
    msg = error_of(tfile, base(instancePendingTimeoutSec=5))
    assert_names(msg, tfile, "T1", "instancePendingTimeoutSec")
