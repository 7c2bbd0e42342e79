"""Who launched an instance, told by what EC2 set at launch and no CreateTags can change.

The provider tag says an instance is this provider's, but anyone allowed to tag can write
it on any instance. Before the plugin ends a host on its own (the orphan sweep, the orphans
command), it wants a mark only the launch itself could have made, all tied to the request id
the instance is tagged with:

- RunInstances' ClientToken, which the plugin derives from the request id (``<rid>-<n>``);
- the Auto Scaling group EC2 names in ``aws:autoscaling:groupName`` (nobody but AWS can
  write an ``aws:`` tag), which the plugin names ``hf-<rid>``;
- the fleet EC2 names in ``aws:ec2:fleet-id`` / ``aws:ec2spot:fleet-request-id``, whose own
  ClientToken the plugin set to the request id (``<rid>`` or ``<rid>-od``): one describe per
  fleet, made only here, on the rare path that terminates.

A host without such a mark is kept and shown as a candidate: the cost of keeping a forged
host is an admin's look, the cost of ending one is someone else's machine.
"""

from __future__ import annotations

import logging
from typing import Any

from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud.apis import made_for
from hostfactory_aws.cloud.apis.asg import group_name
from hostfactory_aws.cloud.session import Aws
from hostfactory_aws.errors import AwsError

log = logging.getLogger(__name__)
UNPROVEN = ("nothing EC2 set at its launch (ClientToken, group, fleet) names request {rid}: "
            "only its tags say it is ours, and tags can be written by anyone allowed to tag")


def mark(inst: dict[str, Any]) -> str | None:
    """What proves the instance's launch: "token", "group", "fleet:<id>" (still to check
    against the fleet's own ClientToken), or None when only tags speak for it."""
    tags = tagmod.from_aws(inst.get("Tags"))
    rid = tags.get(tagmod.REQUEST_ID, "")
    if not rid:
        return None
    if made_for(inst.get("ClientToken"), rid):
        return "token"
    if tags.get(tagmod.GROUP_NAME) == group_name(rid):
        return "group"
    fleet = tags.get(tagmod.EC2_FLEET_ID) or tags.get(tagmod.SPOT_FLEET_ID)
    return f"fleet:{fleet}" if fleet else None


def fleet_token(aws: Aws, fleet_id: str) -> str | None:
    """The ClientToken a fleet or Spot Fleet request was created with; None if it is gone."""
    try:
        if fleet_id.startswith("sfr-"):
            resp = aws.call("ec2", "DescribeSpotFleetRequests", SpotFleetRequestIds=[fleet_id])
            found = resp.get("SpotFleetRequestConfigs") or [{}]
            return (found[0].get("SpotFleetRequestConfig") or {}).get("ClientToken")
        resp = aws.call("ec2", "DescribeFleets", FleetIds=[fleet_id])
        return (resp.get("Fleets") or [{}])[0].get("ClientToken")
    except AwsError as exc:
        if exc.kind == "not_found":
            return None
        raise


def unproven(aws: Aws, insts: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Instance id -> why it is not proven launched by this provider, for those not proven.

    A fleet that cannot be described now (throttled, refused) leaves its hosts unproven this
    time, with the reason; the next pass asks again.
    """
    out: dict[str, str] = {}
    tokens: dict[str, str | None | AwsError] = {}
    for iid, inst in insts.items():
        how = mark(inst)
        rid = tagmod.from_aws(inst.get("Tags")).get(tagmod.REQUEST_ID, "")
        if how in ("token", "group"):
            continue
        if how is None:
            out[iid] = UNPROVEN.format(rid=rid or "(none)")
            continue
        fleet = how.split(":", 1)[1]
        if fleet not in tokens:
            try:
                tokens[fleet] = fleet_token(aws, fleet)
            except AwsError as exc:
                tokens[fleet] = exc
        token = tokens[fleet]
        if isinstance(token, AwsError):
            out[iid] = f"could not check that fleet {fleet} is request {rid}'s: {token}"
        elif not made_for(token, rid):
            out[iid] = (f"its fleet {fleet} was not created for request {rid} "
                        f"(ClientToken {token or 'unknown: the fleet is gone'})")
    return out
