"""tags.py (instanceTags strings, AWS tag lists) and session.py's pure parts."""

from __future__ import annotations

from typing import Any

import pytest

from hostfactory_aws import tags
from hostfactory_aws.cloud import session
from hostfactory_aws.errors import ConfigError

# --- tags --------------------------------------------------------------------------------


@pytest.mark.parametrize("text, parsed", [
    ("", {}),
    ("Project=grid", {"Project": "grid"}),
    ("Project=grid;CostCenter=hpc", {"Project": "grid", "CostCenter": "hpc"}),
    (" Project = grid ; ; CostCenter=hpc;", {"Project": "grid", "CostCenter": "hpc"}),
    ("url=a=b", {"url": "a=b"}),
    ("empty=", {"empty": ""}),
])
def test_parse_tag_string(text: str, parsed: dict[str, str]) -> None:
    assert tags.parse_tag_string(text) == parsed


@pytest.mark.parametrize("text", ["Project", "=grid", "a=1;b", " = x"])
def test_parse_tag_string_errors(text: str) -> None:
    with pytest.raises(ValueError, match="key=value"):
        tags.parse_tag_string(text)


def test_tag_string_round_trip() -> None:
    original = {"Project": "grid", "CostCenter": "hpc", "hostfactory:provider": "awsinst"}
    text = tags.to_tag_string(original)
    assert text == "Project=grid;CostCenter=hpc;hostfactory:provider=awsinst"
    assert tags.parse_tag_string(text) == original


def test_aws_tag_list_round_trip() -> None:
    original = {"a": "1", "b": "2"}
    assert tags.as_aws(original) == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    assert tags.from_aws(tags.as_aws(original)) == original
    assert tags.from_aws(None) == {}


def test_base_tags_filter_and_specs() -> None:
    base = tags.base_tags("awsinst", "req-1", "T1")
    assert base == {"hostfactory:provider": "awsinst", "hostfactory:requestId": "req-1",
                    "hostfactory:templateId": "T1"}
    assert tags.provider_filter("awsinst") == {"Name": "tag:hostfactory:provider",
                                               "Values": ["awsinst"]}
    specs = tags.tag_specs(["instance", "volume"], {"a": "1"})
    assert specs == [{"ResourceType": "instance", "Tags": [{"Key": "a", "Value": "1"}]},
                     {"ResourceType": "volume", "Tags": [{"Key": "a", "Value": "1"}]}]


# --- session (the error table is in test_error_codes.py) -------------------------------

@pytest.mark.parametrize("op, method", [
    ("RunInstances", "run_instances"), ("DescribeInstances", "describe_instances"),
    ("DescribeInstanceTypes", "describe_instance_types"), ("CreateFleet", "create_fleet"),
    ("DeleteFleets", "delete_fleets"), ("GetParameter", "get_parameter"),
    ("CreateLaunchTemplate", "create_launch_template"),
    ("DescribeSpotFleetRequests", "describe_spot_fleet_requests"),
])
def test_snake(op: str, method: str) -> None:
    assert session._snake(op) == method


def test_aws_summary_counts_calls() -> None:
    a = session.Aws({"AWS_REGION": "us-east-1"})
    assert a.summary() == "no AWS calls"
    a.calls.update({"RunInstances": 2, "DescribeInstances": 1})
    assert a.summary().startswith("3 AWS calls (DescribeInstances=1, RunInstances=2)")


def test_credentials_file(tmp_path: Any) -> None:
    f = tmp_path / "credentials"
    f.write_text("[grid]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = s3cr3t\n")
    assert session._read_credentials_file(str(f), "grid") == {
        "aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "s3cr3t"}
    # a file with a single section is used whatever the profile is called
    assert session._read_credentials_file(str(f), "default")["aws_access_key_id"] == "AKIAEXAMPLE"


def test_credentials_file_errors(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="AWS_CREDENTIAL_FILE"):
        session._read_credentials_file(str(tmp_path / "missing"), "default")
    f = tmp_path / "credentials"
    f.write_text("[default]\naws_access_key_id = AKIAEXAMPLE\n")
    with pytest.raises(ConfigError, match="aws_secret_access_key"):
        session._read_credentials_file(str(f), "default")
    f.write_text("[a]\naws_access_key_id = x\n[b]\naws_access_key_id = y\n")
    with pytest.raises(ConfigError, match=r"no \[default\] section"):
        session._read_credentials_file(str(f), "default")
