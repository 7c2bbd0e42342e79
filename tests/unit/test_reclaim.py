"""Pure rules: Spot status -> notice, the gracePeriod arithmetic, who is an orphan."""

from __future__ import annotations

import fnmatch
from datetime import datetime, timezone
from typing import Any

import pytest

from hostfactory_aws import orphans
from hostfactory_aws.admin import orphans as orphans_cmd
from hostfactory_aws.cloud import spot_notices
from hostfactory_aws.verbs.get_return_requests import state_reason

NOW = 1_800_000_000.0
PROVIDER = "awsinst"


def at(seconds_before_now: float) -> datetime:
    return datetime.fromtimestamp(NOW - seconds_before_now, timezone.utc)


def instance(iid: str = "i-1", state: str = "running", **tags: str) -> dict[str, Any]:
    inst: dict[str, Any] = {"InstanceId": iid, "State": {"Name": state},
                            "InstanceType": "m5.large", "LaunchTime": at(3600),
                            "PrivateDnsName": f"ip-{iid}.ec2.internal"}
    tag_map = {"hostfactory:provider": PROVIDER, **tags}
    inst["Tags"] = [{"Key": k, "Value": v} for k, v in tag_map.items() if v is not None]
    return inst


def request(code: str, seconds_ago: float | None = 30, iid: str = "i-1") -> dict[str, Any]:
    status: dict[str, Any] = {"Code": code, "Message": f"msg {code}"}
    if seconds_ago is not None:
        status["UpdateTime"] = at(seconds_ago)
    return {"SpotInstanceRequestId": "sir-1", "InstanceId": iid, "Status": status}


# -- gracePeriod ------------------------------------------------------------------------------

@pytest.mark.parametrize(("age", "grace"), [
    (0, 120), (1, 119), (30, 90), (119, 1), (120, 0), (121, 0), (3600, 0),
    (-50, 120),  # notice stamped in the future (clock skew): never more than EC2's 120 s
])
def test_grace_period_is_what_is_left_of_the_two_minutes(age: float, grace: int) -> None:
    assert spot_notices.grace_period(at(age), NOW) == grace


def test_grace_period_accepts_epoch_and_iso_times() -> None:
    assert spot_notices.grace_period(NOW - 45, NOW) == 75
    iso = at(45).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert spot_notices.grace_period(iso, NOW) == 75


def test_grace_period_without_a_time_is_zero() -> None:
    assert spot_notices.grace_period(None, NOW) == 0


# -- Spot status codes ------------------------------------------------------------------------

@pytest.mark.parametrize("code", sorted(spot_notices.NOTICE_CODES) + ["marked-for-something-new"])
def test_marked_codes_are_notices(code: str) -> None:
    assert spot_notices.classify(code) == "notice"


@pytest.mark.parametrize("code", sorted(spot_notices.RECLAIMED_CODES)
                         + ["instance-terminated-for-a-new-reason"])
def test_instance_taken_codes_are_reclaims(code: str) -> None:
    assert spot_notices.classify(code) == "reclaimed"


@pytest.mark.parametrize("code", sorted(spot_notices.USER_CODES) + [
    "fulfilled", "pending-evaluation", "pending-fulfillment", "capacity-not-available",
    "price-too-low", "canceled-before-fulfillment", "", "instance-stopped-by-user-x"])
def test_user_and_lifecycle_codes_are_not_reclaims(code: str) -> None:
    assert spot_notices.classify(code) == "none"


def test_notice_for_a_running_instance_carries_the_time_left() -> None:
    n = spot_notices.notice(request("marked-for-termination", 30), instance(), NOW)
    assert n is not None and n.pending and n.grace_period == 90
    assert "marked-for-termination" in n.reason and "msg marked-for-termination" in n.reason


def test_notice_for_an_instance_already_gone_has_no_time_left() -> None:
    n = spot_notices.notice(request("marked-for-stop", 10), instance(state="stopping"), NOW)
    assert n is not None and n.grace_period == 0 and not n.pending


def test_reclaimed_code_has_no_time_left_even_if_the_instance_still_shows_running() -> None:
    n = spot_notices.notice(request("instance-terminated-no-capacity", 5), instance(), NOW)
    assert n is not None and n.grace_period == 0


def test_no_notice_for_fulfilled_or_user_codes_or_no_request() -> None:
    assert spot_notices.notice(request("fulfilled"), instance(), NOW) is None
    assert spot_notices.notice(request("instance-terminated-by-user"), instance(), NOW) is None
    assert spot_notices.notice(None, instance(), NOW) is None


def test_a_persistent_request_refulfilled_elsewhere_says_nothing_of_this_instance() -> None:
    assert spot_notices.notice(request("marked-for-termination", iid="i-other"), instance(), NOW) \
        is None


def test_spot_request_id_only_for_spot_instances() -> None:
    inst = instance()
    inst["SpotInstanceRequestId"] = "sir-9"
    assert spot_notices.spot_request_id(inst) == ""  # no InstanceLifecycle: On-Demand
    inst["InstanceLifecycle"] = "spot"
    assert spot_notices.spot_request_id(inst) == "sir-9"


class _Pages:
    """Just enough of Aws for spot_notices.describe: records every call; the region holds
    the requests ``region`` (id -> status code)."""

    def __init__(self, region: dict[str, str] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.region = region

    def paginate(self, service: str, operation: str, **params: Any) -> Any:
        self.calls.append({"operation": operation, **params})
        (flt,) = params["Filters"]
        if flt["Name"] == "spot-instance-request-id":
            yield {"SpotInstanceRequests": [{"SpotInstanceRequestId": v}
                                            for v in flt["Values"]]}
            return
        assert flt["Name"] == "status-code" and self.region is not None
        yield {"SpotInstanceRequests": [
            {"SpotInstanceRequestId": rid, "Status": {"Code": code}}
            for rid, code in self.region.items()
            if any(fnmatch.fnmatchcase(code, v) for v in flt["Values"])]}


def test_describe_up_to_200_request_ids_is_one_call_by_id() -> None:
    aws = _Pages()
    ids = [f"sir-{i:04d}" for i in range(200)] + ["sir-0001", ""]
    got = spot_notices.describe(aws, ids)  # type: ignore[arg-type]
    assert len(got) == 200
    (call,) = aws.calls
    assert call["operation"] == "DescribeSpotInstanceRequests" and call["MaxResults"] == 1000
    assert call["Filters"][0]["Name"] == "spot-instance-request-id"


def test_describe_more_than_200_asks_for_taken_back_requests_once() -> None:
    region = {f"sir-{i:04d}": "fulfilled" for i in range(5000)}
    region.update({"sir-0007": "marked-for-termination", "sir-4999": "instance-terminated-by-price",
                   "sir-0100": "marked-for-stop-by-a-future-cause",  # a code to come
                   "sir-other": "marked-for-termination"})  # another workload's
    aws = _Pages(region)
    got = spot_notices.describe(aws, [f"sir-{i:04d}" for i in range(5000)])  # type: ignore
    assert len(aws.calls) == 1 and aws.calls[0]["MaxResults"] == 1000
    assert set(got) == {"sir-0007", "sir-4999", "sir-0100"}
    # every code classify() reports is in the filter
    for code in spot_notices.NOTICE_CODES | spot_notices.RECLAIMED_CODES:
        assert spot_notices.classify(code) != "none"
        assert any(fnmatch.fnmatchcase(code, v) for v in spot_notices.TAKEN_BACK_FILTER)


# -- state reasons ----------------------------------------------------------------------------

def test_state_reason_names_the_state_and_the_stated_reason() -> None:
    inst = instance(state="terminated")
    inst["StateReason"] = {"Code": "Server.SpotInstanceTermination",
                           "Message": "Server.SpotInstanceTermination: Spot termination"}
    assert state_reason(inst) == ("instance is terminated (Server.SpotInstanceTermination: "
                                  "Spot termination)")
    assert state_reason(instance(state="stopped")) == "instance is stopped"


# -- orphans ----------------------------------------------------------------------------------

def snapshot(**records: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "requests": records}


def create(instances: list[str], launch: str = "done") -> dict[str, Any]:
    return {"kind": "create", "templateId": "T", "launch": launch,
            "instances": {i: {"units": 1.0} for i in instances}}


def orphan_ids(found: dict[str, dict[str, Any]], snap: dict[str, Any],
               held: list[dict[str, str]] | None = None) -> list[str]:
    return [o["instanceId"] for o in orphans.find(found, snap, PROVIDER, NOW, held)]


def test_instances_held_by_an_open_request_are_not_orphans() -> None:
    found = {"i-a": instance("i-a", **{"hostfactory:requestId": "req-1"}),
             "i-b": instance("i-b", **{"hostfactory:requestId": "req-2"}),  # launched late
             "i-c": instance("i-c", **{"hostfactory:requestId": "req-gone"})}
    snap = snapshot(**{"req-1": create(["i-a"]), "req-2": create([], launch="launching")})
    assert orphan_ids(found, snap) == ["i-c"]


def test_instances_of_an_abandoned_launch_are_orphans() -> None:
    found = {"i-a": instance("i-a", **{"hostfactory:requestId": "req-1"})}
    assert orphan_ids(found, snapshot(**{"req-1": create(["i-a"], launch="abandoned")})) \
        == ["i-a"]


def test_ended_and_foreign_instances_are_never_orphans() -> None:
    found = {"i-t": instance("i-t", state="terminated"),
             "i-s": instance("i-s", state="shutting-down"),
             "i-x": instance("i-x", **{"hostfactory:provider": "awsother"}),
             "i-n": {**instance("i-n"), "Tags": []},
             "i-stopped": instance("i-stopped", state="stopped")}
    assert orphan_ids(found, snapshot()) == ["i-stopped"]


def test_machines_hostfactory_holds_are_not_orphans_by_id_or_name() -> None:
    found = {"i-a": instance("i-a"), "i-b": instance("i-b"), "i-c": instance("i-c")}
    held = [{"machineId": "i-a", "name": ""}, {"machineId": "", "name": "ip-i-b.ec2.internal"}]
    assert orphan_ids(found, snapshot(), held) == ["i-c"]
    assert orphan_ids(found, snapshot(), None) == ["i-a", "i-b", "i-c"]


def test_orphan_rows_carry_what_the_admin_needs() -> None:
    found = {"i-a": {**instance("i-a", **{"hostfactory:requestId": "req-9",
                                          "hostfactory:templateId": "T9"}),
                     "ClientToken": "req-9-0"},  # the plugin's own RunInstances
             "i-b": instance("i-b", **{"hostfactory:requestId": "req-9"})}  # tags alone
    row, forged = orphans.find(found, snapshot(), PROVIDER, NOW)
    assert row == {"instanceId": "i-a", "instanceType": "m5.large", "state": "running",
                   "launchTime": int(NOW - 3600), "requestId": "req-9", "templateId": "T9",
                   "name": "ip-i-a.ec2.internal", "ageSeconds": 3600,
                   "reason": "no request record", "canTerminate": True}
    assert forged["reason"] == ("candidate: no request record; only its tags say it is ours")
    assert forged["canTerminate"] is False
    text = orphans_cmd.table([row])
    assert text.splitlines()[0].split() == ["INSTANCE", "TYPE", "STATE", "LAUNCHED", "(UTC)",
                                            "REQUEST", "TEMPLATE", "AGE"]
    assert "i-a" in text and "req-9" in text and "T9" in text and "1h00m" in text


def test_overdue_needs_a_positive_timeout_and_an_older_instance() -> None:
    rows = [{"instanceId": "i-old", "launchTime": 1, "ageSeconds": 3601},
            {"instanceId": "i-young", "launchTime": 1, "ageSeconds": 1799}]
    assert orphans.overdue(rows, 0) == []
    assert [r["instanceId"] for r in orphans.overdue(rows, 30)] == ["i-old"]
    assert orphans.overdue(rows, 61) == []
