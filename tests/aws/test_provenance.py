"""A fleet host is proven ours only by the fleet's own ClientToken (sandbox keeps it, as EC2
does), asked once per fleet, and a fleet that is gone or cannot be asked proves nothing."""

from __future__ import annotations

from typing import Any, Callable

from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import provenance

OTHER = "req-someone-else"


def _template(ec2: Any, ami: str, name: str) -> str:
    return ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={
        "ImageId": ami, "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]


def _fleet(ec2: Any, lt: str, token: str) -> str:
    return ec2.create_fleet(
        Type="request", ClientToken=token,
        LaunchTemplateConfigs=[{"LaunchTemplateSpecification": {"LaunchTemplateId": lt,
                                                                "Version": "1"},
                                "Overrides": [{"InstanceType": "t3.micro"}]}],
        TargetCapacitySpecification={"TotalTargetCapacity": 1,
                                     "DefaultTargetCapacityType": "on-demand"})["FleetId"]


def _spot_fleet(ec2: Any, lt: str, token: str) -> str:
    return ec2.request_spot_fleet(SpotFleetRequestConfig={
        "IamFleetRole": "arn:aws:iam::123456789012:role/fleet", "TargetCapacity": 1,
        "AllocationStrategy": "lowestPrice", "ClientToken": token,
        "LaunchTemplateConfigs": [{"LaunchTemplateSpecification": {"LaunchTemplateId": lt,
                                                                   "Version": "1"},
                                   "Overrides": [{"InstanceType": "t3.micro"}]}],
    })["SpotFleetRequestId"]


def _host(rid: str, key: str, fleet: str) -> dict[str, Any]:
    return {"ClientToken": "fleet-made", "Tags": [
        {"Key": "hostfactory:requestId", "Value": rid}, {"Key": key, "Value": fleet}]}


def test_fleet_hosts_are_proven_by_their_fleets_token(
        make_ctx: Callable[..., Any], ec2: Any, ami: str, rid: str) -> None:
    ctx = make_ctx()
    lt = _template(ec2, ami, f"lt-{rid}")
    ours, theirs = _fleet(ec2, lt, rid), _fleet(ec2, lt, OTHER)
    top_up = _fleet(ec2, lt, f"{rid}-od")
    spot_ours, spot_theirs = _spot_fleet(ec2, lt, rid), _spot_fleet(ec2, lt, f"{OTHER}-x")
    hosts = {
        "i-ours": _host(rid, tagmod.EC2_FLEET_ID, ours),
        "i-ours-too": _host(rid, tagmod.EC2_FLEET_ID, ours),
        "i-top-up": _host(rid, tagmod.EC2_FLEET_ID, top_up),
        "i-spot": _host(rid, tagmod.SPOT_FLEET_ID, spot_ours),
        "i-their-fleet": _host(rid, tagmod.EC2_FLEET_ID, theirs),
        "i-their-spot": _host(rid, tagmod.SPOT_FLEET_ID, spot_theirs),
        "i-gone-fleet": _host(rid, tagmod.EC2_FLEET_ID, "fleet-00000000-0000-0000-0000-"
                                                             "000000000000"),
    }
    calls: list[str] = []
    real = ctx.aws.call
    ctx.aws.call = lambda service, op, **kw: calls.append(op) or real(service, op, **kw)

    kept = provenance.unproven(ctx.aws, hosts)

    assert set(kept) == {"i-their-fleet", "i-their-spot", "i-gone-fleet"}
    assert f"ClientToken {OTHER}" in kept["i-their-fleet"]
    assert "the fleet is gone" in kept["i-gone-fleet"]
    assert len(calls) == 6  # one describe per fleet, however many of its hosts are asked


def test_a_fleet_that_cannot_be_asked_proves_nothing_this_time(
        make_ctx: Callable[..., Any], ec2: Any, ami: str, rid: str) -> None:
    from hostfactory_aws.errors import AwsError

    ctx = make_ctx()
    fleet = _fleet(ec2, _template(ec2, ami, f"lt-{rid}"), rid)

    def refused(service: str, op: str, **kw: Any) -> Any:
        raise AwsError(op, "UnauthorizedOperation", "not allowed", "fatal")

    ctx.aws.call = refused
    kept = provenance.unproven(ctx.aws, {"i-1": _host(rid, tagmod.EC2_FLEET_ID, fleet)})
    assert "could not check that fleet" in kept["i-1"] and "UnauthorizedOperation" in kept["i-1"]
