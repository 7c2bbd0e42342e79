"""Issue 12: what a lost state file can no longer name, read from AWS's own listings (pure).

The filters that keep this provider's live fleets, Spot Fleet requests, groups and request
launch templates; the records made of them; when the reaper looks for a lost fleet; and
doctor's reading of the groups quota.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from hostfactory_aws import reconcile, records
from hostfactory_aws.admin import doctor
from hostfactory_aws.cloud import apis
from hostfactory_aws.cloud.apis import asg, ec2_fleet, spot_fleet

RID = "req-11111111-1111-4111-8111-111111111111"
WHEN = datetime(2026, 12, 1, 5, 0, tzinfo=timezone.utc)


def tags(provider: str = "aws", rid: str | None = RID, tid: str = "T") -> list[dict[str, str]]:
    out = {"hostfactory:provider": provider, "hostfactory:templateId": tid, "Name": "x"}
    if rid:
        out["hostfactory:requestId"] = rid
    return [{"Key": k, "Value": v} for k, v in out.items()]


def fleet(fid: str, state: str = "active", ftype: str = "maintain", token: str = RID,
          **kw: Any) -> dict:
    return {"FleetId": fid, "FleetState": state, "Type": ftype, "CreateTime": WHEN,
            "ClientToken": token,
            "TargetCapacitySpecification": {"TotalTargetCapacity": 3}, "Tags": tags(**kw)}


def test_ec2_fleets_kept_are_this_providers_request_and_maintain_fleets_not_deleted() -> None:
    listed = [fleet("fleet-a"), fleet("fleet-r", "modifying", "request"),
              fleet("fleet-d", "deleted"), fleet("fleet-dr", "deleted_running"),
              fleet("fleet-dt", "deleted_terminating"), fleet("fleet-i", ftype="instant"),
              fleet("fleet-o", provider="other"), fleet("fleet-n", rid=None),
              fleet("fleet-top-up", token=f"{RID}-od"),
              fleet("fleet-tagged-by-hand", token="their-own-token")]  # not ours: kept alive
    got = ec2_fleet.owned_in(listed, "aws")
    assert [r["id"] for r in got] == ["fleet-a", "fleet-r", "fleet-top-up"]
    assert got[0] == {"api": "EC2Fleet", "id": "fleet-a", "requestId": RID, "templateId": "T",
                      "createdAt": WHEN.timestamp(), "fleetType": "maintain", "target": 3}


def test_spot_fleet_requests_kept_are_the_ones_not_cancelled() -> None:
    def sfr(sid: str, state: str, token: str = RID, **kw: Any) -> dict[str, Any]:
        return {"SpotFleetRequestId": sid, "SpotFleetRequestState": state, "CreateTime": WHEN,
                "SpotFleetRequestConfig": {"Type": "request", "TargetCapacity": 2,
                                           "ClientToken": token},
                "Tags": tags(**kw)}

    listed = [sfr("sfr-a", "active"), sfr("sfr-f", "failed"), sfr("sfr-c", "cancelled"),
              sfr("sfr-cr", "cancelled_running"), sfr("sfr-ct", "cancelled_terminating"),
              sfr("sfr-o", "active", provider="other"),
              sfr("sfr-tagged-by-hand", "active", token="")]
    got = spot_fleet.owned_in(listed, "aws")
    assert [r["id"] for r in got] == ["sfr-a", "sfr-f"]
    assert (got[0]["api"], got[0]["fleetType"], got[0]["target"]) == ("SpotFleet", "request", 2)


def test_groups_kept_are_named_for_their_request_and_not_being_deleted() -> None:
    def group(name: str, status: str | None = None, **kw: Any) -> dict[str, Any]:
        g = {"AutoScalingGroupName": name, "DesiredCapacity": 1, "CreatedTime": WHEN,
             "Tags": [{**t, "ResourceId": name, "PropagateAtLaunch": False}
                      for t in tags(**kw)]}
        return {**g, "Status": status} if status else g

    listed = [group(f"hf-{RID}"), group("admins-group"),
              group(f"hf-{RID}", "Delete in progress"), group(f"hf-{RID}", provider="x")]
    got = asg.owned_in(listed, "aws")
    assert [(r["api"], r["id"], r["target"]) for r in got] == [("ASG", f"hf-{RID}", 1)]


def test_launch_templates_kept_are_those_made_for_a_request_never_an_admins() -> None:
    def lt(name: str, **kw: Any) -> dict[str, Any]:
        return {"LaunchTemplateId": f"lt-{len(name)}", "LaunchTemplateName": name,
                "CreateTime": WHEN, "Tags": tags(**kw)}

    got = apis.owned_templates([lt(f"hf-{RID}"), lt("admins-own"),
                                lt(f"hf-{RID}", provider="other")], "aws")
    assert [(r["api"], r["launchTemplateName"]) for r in got] == [("", f"hf-{RID}")]


@pytest.mark.parametrize(("templates", "listed"), [
    ([{"providerApi": "RunInstances"}], set()),
    ([{"providerApi": "EC2Fleet", "fleetType": "instant"}], {"LaunchTemplate"}),
    ([{"providerApi": "EC2Fleet", "fleetType": "maintain"}, {"providerApi": "ASG"}],
     {"LaunchTemplate", "EC2Fleet", "ASG"}),
    ([{"providerApi": "SpotFleet", "fleetType": "request"}], {"LaunchTemplate", "SpotFleet"}),
])
def test_only_the_families_the_templates_use_are_listed(templates: list[dict[str, Any]],
                                                         listed: set[str]) -> None:
    assert apis.families(templates) == listed


def resources() -> list[dict[str, Any]]:
    return [{"api": "EC2Fleet", "id": "fleet-a", "requestId": RID, "templateId": "T",
             "createdAt": 500.0, "fleetType": "maintain", "target": 3},
            {"api": "", "id": "lt-1", "requestId": RID, "templateId": "T", "createdAt": 400.0,
             "launchTemplateName": f"hf-{RID}"}]


def test_a_request_known_only_by_its_fleet_has_ended_and_holds_nothing() -> None:
    reqs: dict[str, Any] = {}
    reconcile.adopt_resources(reqs, resources(), 1000.0)
    rec = reqs[RID]
    assert (rec["api"], rec["fleetType"], rec["fleetIds"], rec["target"]) == (
        "EC2Fleet", "maintain", ["fleet-a"], 3)
    assert (rec["launchTemplateName"], rec["launchTemplateId"]) == (f"hf-{RID}", "lt-1")
    assert rec["createdAt"] == 400.0 and rec["delivered"] == [] and rec["rebuilt"]
    assert records.held_units({"requests": reqs}) == {"T": 0.0}
    assert records.needs_settle(rec) and not records.can_clean(rec)  # settled first
    assert records.can_clean({**rec, "settled": True}) and records.has_resources(rec)


def test_a_record_rebuilt_from_hosts_learns_its_fleet_a_plugin_record_is_left_alone() -> None:
    from_hosts = records.new_create("T", 1, "?", 100.0)
    from_hosts.update(rebuilt=True, launch="done", status="complete", target=1)
    own = records.new_create("T", 1, "EC2Fleet", 100.0)
    reqs = {RID: from_hosts, "req-mine": own}
    mine = [{**r, "requestId": "req-mine"} for r in resources()]
    reconcile.adopt_resources(reqs, resources() + mine, 1000.0)
    assert (from_hosts["api"], from_hosts["fleetIds"], from_hosts["target"]) == (
        "EC2Fleet", ["fleet-a"], 3)
    assert own["fleetIds"] == [] and "launchTemplateName" not in own


@pytest.mark.parametrize(("change", "searched"), [
    ({"launch": "abandoned"}, True),
    ({"launch": "unknown"}, True),
    ({"launch": "launching", "doubt": "kept"}, True),
    ({"launch": "done"}, False),  # its reply named the fleet
    ({"launch": "abandoned", "fleetIds": ["fleet-a"]}, False),
    ({"launch": "abandoned", "fleetSearchedAt": 5.0}, False),  # once
    ({"launch": "abandoned", "cleaned": True}, False),
    ({"launch": "abandoned", "fleetType": "instant"}, False),
    ({"launch": "abandoned", "api": "ASG"}, False),  # its group is named for the request
])
def test_the_reaper_looks_for_a_lost_fleet_only_while_one_may_be_unnamed(
        change: dict[str, Any], searched: bool) -> None:
    rec = {**records.new_create("T", 2, "EC2Fleet", 1.0), "fleetType": "request", **change}
    assert reconcile.lost_fleet(rec) is searched


@pytest.mark.parametrize(("used", "limit", "max_number", "status"), [
    (10, 500, 20, doctor.OK),
    (485, 500, 20, doctor.WARN),   # more than 80% used
    (2, 5, 4, doctor.WARN),        # fewer free than the template could need
    (5, 5, 1, doctor.FAIL),        # none free: launches fail
    (2, 5, -1, doctor.OK),         # unbounded template: need unknown, 60% used
])
def test_groups_quota(used: int, limit: int, max_number: int, status: str) -> None:
    line = doctor.asg_quota_line(used, limit, [{"templateId": "G", "maxNumber": max_number}])
    assert line.status == status, line.text()
    assert f"{used} of {limit} Auto Scaling groups in use" in line.detail
