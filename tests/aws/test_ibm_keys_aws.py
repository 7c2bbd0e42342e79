"""Issue 13 on mock_aws: IBM keys whose meaning needs AWS calls.

AWS_TAG_InstanceID, IBM's describe retries, and heterogeneous's On-Demand top-up when Spot
falls short (never silently all-Spot).
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from hostfactory_aws.cloud import session
from hostfactory_aws.errors import AwsError
from hostfactory_aws.verbs import request_machines


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def test_tag_instance_id_on_instances_and_volumes(make_ctx: Callable[..., Any],
                                                  template: Any, ec2: Any) -> None:
    ctx = make_ctx(template("RI", rootDeviceVolumeSize=20), AWS_TAG_InstanceID="true")
    rid = request_machines.run(ctx, {"template": {"templateId": "RI", "machineCount": 2}})[
        "requestId"]
    found = ec2.describe_instances(Filters=[{"Name": "tag:hostfactory:requestId",
                                             "Values": [rid]}])["Reservations"]
    ids = [i["InstanceId"] for r in found for i in r["Instances"]]
    assert len(ids) == 2
    for r in found:
        for inst in r["Instances"]:
            assert _tags(inst)["InstanceID"] == inst["InstanceId"]
    vols = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id",
                                          "Values": ids}])["Volumes"]
    assert vols and all(_tags(v)["InstanceID"] == v["Attachments"][0]["InstanceId"]
                        for v in vols)


def test_without_the_key_no_instance_id_tag(make_ctx: Callable[..., Any], template: Any,
                                            ec2: Any) -> None:
    ctx = make_ctx(template("RI"))
    rid = request_machines.run(ctx, {"template": {"templateId": "RI", "machineCount": 1}})[
        "requestId"]
    found = ec2.describe_instances(Filters=[{"Name": "tag:hostfactory:requestId",
                                             "Values": [rid]}])["Reservations"]
    assert "InstanceID" not in _tags(found[0]["Instances"][0])


class _Flaky:
    """A client whose describe fails (no answer) a number of times, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def describe_instances(self, **_: Any) -> dict[str, Any]:
        from botocore.exceptions import EndpointConnectionError

        self.calls += 1
        if self.calls <= self.failures:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        return {"Reservations": []}

    def run_instances(self, **kw: Any) -> dict[str, Any]:
        return self.describe_instances(**kw)


@pytest.mark.parametrize("retries, failures, ok", [(0, 1, False), (2, 2, True), (2, 3, False)])
def test_describe_request_retries(retries: int, failures: int, ok: bool) -> None:
    aws = session.Aws({"AWS_REGION": "us-east-1", "AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS": retries,
                       "AWS_DESCRIBE_REQUEST_INTERVAL": 1})
    flaky = _Flaky(failures)
    aws._clients["ec2"] = flaky
    if ok:
        assert aws.call("ec2", "DescribeInstances") == {"Reservations": []}
    else:
        with pytest.raises(AwsError):
            aws.call("ec2", "DescribeInstances")
    assert flaky.calls == min(failures + 1, retries + 1)
    assert aws.calls["DescribeInstances"] == flaky.calls


def test_changing_calls_are_not_retried_by_the_describe_setting() -> None:
    aws = session.Aws({"AWS_REGION": "us-east-1", "AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS": 5})
    flaky = _Flaky(1)
    aws._clients["ec2"] = flaky
    with pytest.raises(AwsError):
        aws.call("ec2", "RunInstances")
    assert flaky.calls == 1


def test_heterogeneous_buys_on_demand_for_what_spot_did_not_give(
        make_ctx: Callable[..., Any], template: Any, ec2: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    tpl = template("Hetero", vmTypes={"m5.large": 1, "m5.xlarge": 2},
                   vmTypesOnDemand={"m5.large": 1}, priceType="heterogeneous",
                   fleetRole="arn:aws:iam::123456789012:role/spot-fleet")
    ctx = make_ctx(tpl)
    original = ctx.aws.call
    sent: list[dict[str, Any]] = []

    def call(service: str, operation: str, **params: Any) -> dict[str, Any]:
        if operation == "CreateFleet":
            sent.append(params)
            if params["TargetCapacitySpecification"]["DefaultTargetCapacityType"] == "spot":
                return {"FleetId": "fleet-spotshort", "Instances": [], "Errors": [{
                    "ErrorCode": "InsufficientInstanceCapacity",
                    "ErrorMessage": "no spot capacity"}]}
        return original(service, operation, **params)

    monkeypatch.setattr(ctx.aws, "call", call)
    answer = request_machines.run(ctx, {"template": {"templateId": "Hetero",
                                                     "machineCount": 3}})
    assert [p["TargetCapacitySpecification"] for p in sent] == [
        {"TotalTargetCapacity": 3, "DefaultTargetCapacityType": "spot",
         "OnDemandTargetCapacity": 0, "SpotTargetCapacity": 3},
        {"TotalTargetCapacity": 3, "DefaultTargetCapacityType": "on-demand",
         "OnDemandTargetCapacity": 3}]
    assert [o["InstanceType"] for o in sent[1]["LaunchTemplateConfigs"][0]["Overrides"]] == [
        "m5.large"] * 2  # vmTypesOnDemand, over the two subnets
    assert sent[1]["ClientToken"] == f"{answer['requestId']}-od"
    found = ec2.describe_instances(Filters=[{"Name": "tag:hostfactory:requestId",
                                             "Values": [answer["requestId"]]}])["Reservations"]
    insts = [i for r in found for i in r["Instances"]]
    assert len(insts) == 3 and {i["InstanceType"] for i in insts} == {"m5.large"}
    assert all(i.get("InstanceLifecycle") != "spot" for i in insts)


def test_key_file_creates_a_missing_key_pair_and_saves_it(make_ctx: Callable[..., Any],
                                                          template: Any, ec2: Any,
                                                          tmp_path: Any, provider: str) -> None:
    keys = tmp_path / "keys"
    name = f"{provider}-key"
    ctx = make_ctx(template("RI", keyName=name), AWS_KEY_FILE=str(keys))
    rid = request_machines.run(ctx, {"template": {"templateId": "RI", "machineCount": 1}})[
        "requestId"]
    assert ec2.describe_key_pairs(KeyNames=[name])["KeyPairs"]
    pem = keys / f"{name}.pem"
    assert pem.read_text().startswith("-----BEGIN") and (pem.stat().st_mode & 0o777) == 0o400
    inst = ec2.describe_instances(Filters=[{"Name": "tag:hostfactory:requestId",
                                            "Values": [rid]}])["Reservations"][0]["Instances"]
    assert inst[0]["KeyName"] == name
    request_machines.run(ctx, {"template": {"templateId": "RI", "machineCount": 1}})
    assert pem.read_text().startswith("-----BEGIN")  # known now: neither made nor written
