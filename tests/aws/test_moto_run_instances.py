"""apis/run_instances.launch against moto: counts, tags at creation, batches, subnet fallback."""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import pytest

from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud.apis import run_instances
from hostfactory_aws.errors import AwsError

Fail = Callable[[str, dict[str, Any]], "AwsError | None"]


def launch(ctx: Any, rid: str, units: int, template_id: str = "OnDemand") -> dict[str, Any]:
    t = ctx.template(template_id)
    return run_instances.launch(ctx, t, rid, units,
                                tagmod.base_tags(ctx.provider, rid, template_id))


def inject(ctx: Any, monkeypatch: pytest.MonkeyPatch, fail: Fail) -> list[tuple[str, dict]]:
    """Let ``fail`` turn chosen AWS calls into AWS errors; returns every call made."""
    seen: list[tuple[str, dict[str, Any]]] = []
    real = ctx.aws.call

    def call(service: str, operation: str, **params: Any) -> dict[str, Any]:
        seen.append((operation, params))
        err = fail(operation, params)
        if err is not None:
            ctx.aws.calls[operation] += 1
            raise err
        return real(service, operation, **params)

    monkeypatch.setattr(ctx.aws, "call", call)
    return seen


def volumes_of(ec2: Any, ids: list[str]) -> list[dict[str, Any]]:
    return ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id",
                                          "Values": ids}])["Volumes"]


def test_launches_the_count_asked(rid: str, make_ctx: Any, template: Any,
                                  described: Any) -> None:
    ctx = make_ctx(template())
    got = launch(ctx, rid, 3)
    assert len(got["instances"]) == 3
    assert got["errors"] == []
    assert ctx.aws.calls["RunInstances"] == 1
    for info in got["instances"].values():
        assert info["units"] == 1.0 and info["type"] == "m5.large"
        assert info["name"].endswith(".ec2.internal")
    found = described(list(got["instances"]))
    assert {i["InstanceType"] for i in found.values()} == {"m5.large"}
    assert {info["name"] for info in got["instances"].values()} == \
        {i["PrivateDnsName"] for i in found.values()}


def test_instances_and_volumes_are_tagged_at_creation(rid: str, provider: str, make_ctx: Any,
                                                      template: Any, described: Any,
                                                      ec2: Any) -> None:
    ctx = make_ctx(template())
    got = launch(ctx, rid, 2)
    assert ctx.aws.calls["CreateTags"] == 0  # tagged by RunInstances itself, not afterwards
    want = {"hostfactory:provider": provider, "hostfactory:requestId": rid,
            "hostfactory:templateId": "OnDemand", "Project": "grid", "CostCenter": "hpc"}
    for inst in described(list(got["instances"])).values():
        assert tagmod.from_aws(inst["Tags"]) == want
    vols = volumes_of(ec2, list(got["instances"]))
    assert len(vols) == 2
    for vol in vols:
        assert tagmod.from_aws(vol["Tags"]) == want


def test_root_volume_size_reaches_ec2(rid: str, make_ctx: Any, template: Any,
                                      ec2: Any) -> None:
    ctx = make_ctx(template(rootDeviceVolumeSize=77, volumeType="gp3"))
    got = launch(ctx, rid, 1)
    assert [v["Size"] for v in volumes_of(ec2, list(got["instances"]))] == [77]


def test_batches_with_distinct_client_tokens(rid: str, make_ctx: Any, template: Any,
                                             described: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_instances, "BATCH", 2)
    ctx = make_ctx(template())
    got = launch(ctx, rid, 5)
    assert len(got["instances"]) == 5
    assert ctx.aws.calls["RunInstances"] == 3
    tokens = Counter(i["ClientToken"] for i in described(list(got["instances"])).values())
    assert tokens == {f"{rid}-0": 2, f"{rid}-1": 2, f"{rid}-2": 1}


def test_a_repeated_launch_launches_nothing_new(rid: str, provider: str, make_ctx: Any,
                                               template: Any, ec2: Any) -> None:
    ctx = make_ctx(template())
    first = launch(ctx, rid, 2)
    again = launch(ctx, rid, 2)  # e.g. a retry after a lost reply: same ClientTokens
    assert set(again["instances"]) == set(first["instances"])
    found = ec2.describe_instances(Filters=[{"Name": "tag:hostfactory:provider",
                                             "Values": [provider]}])
    assert sum(len(r["Instances"]) for r in found["Reservations"]) == 2


def test_capacity_error_falls_back_to_the_next_subnet(
        rid: str, make_ctx: Any, template: Any, subnets: list[str], described: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(template(subnetId=subnets[:2]))

    def no_room_in_first(op: str, params: dict[str, Any]) -> AwsError | None:
        if op == "RunInstances" and params.get("SubnetId") == subnets[0]:
            return AwsError(op, "InsufficientInstanceCapacity",
                            "We currently do not have sufficient m5.large capacity", "capacity")
        return None

    seen = inject(ctx, monkeypatch, no_room_in_first)
    got = launch(ctx, rid, 3)
    assert [p.get("SubnetId") for op, p in seen if op == "RunInstances"] == subnets[:2]
    assert len(got["instances"]) == 3
    assert {i["SubnetId"] for i in described(list(got["instances"])).values()} == {subnets[1]}
    assert got["errors"] == ["InsufficientInstanceCapacity: We currently do not have "
                             "sufficient m5.large capacity"]


def test_capacity_error_in_every_subnet_raises(rid: str, make_ctx: Any, template: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(template())
    inject(ctx, monkeypatch, lambda op, p: AwsError(op, "InsufficientInstanceCapacity",
                                                     "none", "capacity")
           if op == "RunInstances" else None)
    with pytest.raises(AwsError) as exc:
        launch(ctx, rid, 2)
    assert exc.value.kind == "capacity"
    assert ctx.aws.calls["RunInstances"] == 2  # one try per subnet, no more


def test_fatal_error_with_nothing_launched_raises(rid: str, provider: str, make_ctx: Any,
                                                  template: Any, ec2: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(template())
    inject(ctx, monkeypatch, lambda op, p: AwsError(
        op, "InvalidAMIID.NotFound", "The image id does not exist (check the template's "
        "imageId)", "fatal") if op == "RunInstances" else None)
    with pytest.raises(AwsError) as exc:
        launch(ctx, rid, 2)
    assert (exc.value.code, exc.value.kind) == ("InvalidAMIID.NotFound", "fatal")
    assert ctx.aws.calls["RunInstances"] == 1  # a fatal error is not retried elsewhere
    found = ec2.describe_instances(Filters=[{"Name": "tag:hostfactory:provider",
                                             "Values": [provider]}])
    assert found["Reservations"] == []


def test_error_after_a_partial_launch_keeps_what_was_launched(
        rid: str, make_ctx: Any, template: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_instances, "BATCH", 2)
    ctx = make_ctx(template())
    count = {"n": 0}

    def second_batch_fails(op: str, params: dict[str, Any]) -> AwsError | None:
        if op != "RunInstances":
            return None
        count["n"] += 1
        if count["n"] >= 2:
            return AwsError(op, "InvalidParameterValue", "bad", "fatal")
        return None

    inject(ctx, monkeypatch, second_batch_fails)
    got = launch(ctx, rid, 5)
    assert len(got["instances"]) == 2
    assert got["errors"] == ["InvalidParameterValue: bad"]


def test_spot_template_asks_for_the_spot_market(rid: str, make_ctx: Any, template: Any,
                                                described: Any) -> None:
    ctx = make_ctx(template(priceType="spot", maxSpotPrice=0.2))
    got = launch(ctx, rid, 1)
    (inst,) = described(list(got["instances"])).values()
    assert inst.get("InstanceLifecycle") == "spot"
