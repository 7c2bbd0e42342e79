"""cloud/instances.py and cloud/instance_types.py against moto: the sweep, lookups,
termination, instance-type facts."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import instance_types, instances
from hostfactory_aws.errors import AwsError, ConfigError


def run(ec2: Any, ami: str, provider: str | None, count: int = 1,
        **tags: str) -> list[str]:
    """Launch instances directly (not through the plugin), tagged as a provider would."""
    tag = dict(tags)
    if provider:
        tag[tagmod.PROVIDER] = provider
    kwargs: dict[str, Any] = {}
    if tag:
        kwargs["TagSpecifications"] = tagmod.tag_specs(["instance"], tag)
    resp = ec2.run_instances(ImageId=ami, MinCount=count, MaxCount=count,
                             InstanceType="t3.micro", **kwargs)
    return [i["InstanceId"] for i in resp["Instances"]]


@pytest.fixture
def ctx(make_ctx: Any, template: Any) -> Any:
    return make_ctx(template())


def test_sweep_returns_only_this_providers_instances(ctx: Any, ec2: Any, ami: str,
                                                     provider: str) -> None:
    mine = run(ec2, ami, provider, 2)
    run(ec2, ami, provider + "-other", 1)
    run(ec2, ami, None, 1, Name="not-hostfactory")
    run(ec2, ami, None, 1)
    found = instances.sweep(ctx.aws, provider)
    assert set(found) == set(mine)
    assert ctx.aws.calls["DescribeInstances"] == 1


def test_sweep_includes_terminated_instances(ctx: Any, ec2: Any, ami: str,
                                             provider: str) -> None:
    mine = run(ec2, ami, provider, 2)
    ec2.terminate_instances(InstanceIds=mine[:1])
    found = instances.sweep(ctx.aws, provider)
    assert set(found) == set(mine)
    assert found[mine[0]]["State"]["Name"] in ("shutting-down", "terminated")


def test_sweep_follows_pages(ctx: Any, ec2: Any, ami: str, provider: str,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instances, "PAGE", 5)
    mine = [iid for _ in range(12) for iid in run(ec2, ami, provider)]
    found = instances.sweep(ctx.aws, provider)
    assert set(found) == set(mine)
    assert ctx.aws.calls["DescribeInstances"] == 3  # 5 + 5 + 2


def test_lookup_with_an_unknown_id_does_not_fail(ctx: Any, ec2: Any, ami: str) -> None:
    known = run(ec2, ami, None, 1)
    found = instances.lookup(ctx.aws, known + ["i-0123456789abcdef0"])
    assert set(found) == set(known)
    assert instances.lookup(ctx.aws, ["i-0123456789abcdef0"]) == {}


def test_lookup_finds_other_owners_too(ctx: Any, ec2: Any, ami: str) -> None:
    theirs = run(ec2, ami, "someone-else", 1)
    assert set(instances.lookup(ctx.aws, theirs)) == set(theirs)


def test_lookup_in_chunks(ctx: Any, ec2: Any, ami: str,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instances, "FILTER_VALUES", 2)
    ids = run(ec2, ami, None, 5)
    assert set(instances.lookup(ctx.aws, ids)) == set(ids)
    assert ctx.aws.calls["DescribeInstances"] == 3


def test_lookup_ours_sweeps_when_that_takes_fewer_calls(ctx: Any, ec2: Any, ami: str,
                                                      provider: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instances, "FILTER_VALUES", 2)  # ids: 1 call per 2
    monkeypatch.setattr(instances, "PAGE", 5)           # sweep: 1 call per 5 of ours
    mine = [iid for _ in range(6) for iid in run(ec2, ami, provider)]  # moto pages by launch
    theirs = run(ec2, ami, "someone-else", 1)

    found = instances.lookup_ours(ctx.aws, provider, mine + theirs + ["i-0123456789abcdef0"],
                                  known=6)

    assert set(found) == set(mine + theirs)  # the same answer as lookup()
    # 2 sweep pages, then 1 filter for the 2 ids the sweep did not list (not 4 filters)
    assert ctx.aws.calls["DescribeInstances"] == 3


def test_lookup_ours_asks_by_id_for_a_few_of_many(ctx: Any, ec2: Any, ami: str,
                                                 provider: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instances, "PAGE", 5)
    mine = run(ec2, ami, provider, 3)

    found = instances.lookup_ours(ctx.aws, provider, mine[:1], known=5000)

    assert set(found) == set(mine[:1])
    assert ctx.aws.calls["DescribeInstances"] == 1  # one filter, not 1,000 sweep pages


def test_lookup_names_by_dns_and_ip(ctx: Any, ec2: Any, ami: str, described: Any) -> None:
    a, b = run(ec2, ami, None, 2)
    found = described([a, b])
    dns, ip = found[a]["PrivateDnsName"], found[b]["PrivateIpAddress"]
    got = instances.lookup_names(ctx.aws, [dns, ip, "ip-10-255-255-254.ec2.internal"])
    assert {k: v["InstanceId"] for k, v in got.items()} == {dns: a, ip: b}


def test_terminate_refuses_nothing_on_success(ctx: Any, ec2: Any, ami: str,
                                              described: Any) -> None:
    ids = run(ec2, ami, None, 3)
    assert instances.terminate(ctx.aws, ids) == {}
    assert {i["State"]["Name"] for i in described(ids).values()} <= {"shutting-down",
                                                                      "terminated"}


def test_terminate_records_refusals(ctx: Any) -> None:
    refused = instances.terminate(ctx.aws, ["i-0123456789abcdef0"])
    assert list(refused) == ["i-0123456789abcdef0"]
    assert "InvalidInstanceID.NotFound" in refused["i-0123456789abcdef0"]


def test_terminate_raises_when_the_outcome_is_unknown(
        ctx: Any, ec2: Any, ami: str, monkeypatch: pytest.MonkeyPatch,
        described: Any) -> None:
    ids = run(ec2, ami, None, 1)

    def throttled(service: str, operation: str, **params: Any) -> dict[str, Any]:
        raise AwsError(operation, "RequestLimitExceeded", "slow down", "throttle")

    monkeypatch.setattr(ctx.aws, "call", throttled)
    with pytest.raises(AwsError, match="RequestLimitExceeded"):
        instances.terminate(ctx.aws, ids)
    assert described(ids)[ids[0]]["State"]["Name"] in ("pending", "running")


def test_tag(ctx: Any, ec2: Any, ami: str, described: Any) -> None:
    ids = run(ec2, ami, None, 2)
    instances.tag(ctx.aws, ids, {tagmod.RETURN_ID: "ret-1"})
    for inst in described(ids).values():
        assert tagmod.from_aws(inst["Tags"])[tagmod.RETURN_ID] == "ret-1"


# --- ec2_info ----------------------------------------------------------------------------

def test_instance_specs_from_aws_then_from_the_cache(ctx: Any) -> None:
    cache = os.path.join(ctx.work_dir, "instance_types.json")
    specs = instance_types.instance_specs(lambda: ctx.aws, ["m5.large", "m6g.large"], cache)
    assert specs == {"m5.large": {"ncpus": 2, "ncores": 1, "nram": 8192, "arch": "X86_64"},
                     "m6g.large": {"ncpus": 2, "ncores": 2, "nram": 8192, "arch": "ARM64"}}
    assert ctx.aws.calls["DescribeInstanceTypes"] == 1
    with open(cache) as fh:
        assert set(json.load(fh)) == {"m5.large", "m6g.large"}

    def no_aws() -> Any:
        raise AssertionError("the cache should have answered")

    assert instance_types.instance_specs(no_aws, ["m6g.large"], cache) == {
        "m6g.large": specs["m6g.large"]}


def test_instance_specs_asks_only_for_new_types(ctx: Any) -> None:
    cache = os.path.join(ctx.work_dir, "instance_types.json")
    instance_types.instance_specs(lambda: ctx.aws, ["m5.large"], cache)
    got = instance_types.instance_specs(lambda: ctx.aws, ["m5.large", "c5.xlarge"], cache)
    assert got["c5.xlarge"]["ncpus"] == 4
    assert ctx.aws.calls["DescribeInstanceTypes"] == 2


def test_unknown_instance_type_names_vmtype(ctx: Any) -> None:
    cache = os.path.join(ctx.work_dir, "instance_types.json")
    with pytest.raises(ConfigError) as exc:
        instance_types.instance_specs(lambda: ctx.aws, ["m5.huge"], cache)
    assert "vmType" in str(exc.value) and "m5.huge" in str(exc.value)
    assert "us-east-1" in str(exc.value)
    assert not os.path.exists(cache)


def test_root_device_name_is_cached(ctx: Any, ami: str) -> None:
    cache = os.path.join(ctx.work_dir, "images.json")
    assert instance_types.root_device_name(ctx.aws, ami, cache) == "/dev/xvda"
    assert instance_types.root_device_name(ctx.aws, ami, cache) == "/dev/xvda"
    assert ctx.aws.calls["DescribeImages"] == 1


def test_resolve_image_from_ssm(ctx: Any) -> None:
    path = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64"
    image = instance_types.resolve_image(ctx.aws, path)
    assert image.startswith("ami-")
    assert instance_types.resolve_image(ctx.aws, "resolve:ssm:" + path) == image
    assert instance_types.resolve_image(ctx.aws, "ami-12345678") == "ami-12345678"
    assert ctx.aws.calls["GetParameter"] == 2
