"""A launch HostFactory never learnt of (killed before its answer) is found as an orphan."""

from __future__ import annotations

from hostfactory_aws import orphans, records


def _state(polled: bool | None, age: float, now: float) -> dict:
    rec = records.new_create("T", 1, "RunInstances", now - age)
    rec["launch"] = "done"
    rec["instances"] = {"i-0123456789abcdef0": {"units": 1.0, "state": "running"}}
    if polled is None:
        del rec["polled"]  # a record written before the field existed
    else:
        rec["polled"] = polled
    return {"version": 1, "requests": {"req-1": rec}}


def test_never_polled_launch_past_any_action_timeout_is_not_open() -> None:
    now = 1_000_000.0
    rids, iids = orphans.open_requests(_state(False, records.IN_FLIGHT_MAX_SEC + 1, now), now)
    assert rids == set() and iids == set()


def test_recent_or_polled_or_old_format_launch_stays_open() -> None:
    now = 1_000_000.0
    for polled, age in ((False, 60), (True, 10_000), (None, 10_000)):
        rids, iids = orphans.open_requests(_state(polled, age, now), now)
        assert rids == {"req-1"} and iids == {"i-0123456789abcdef0"}, (polled, age)


def test_new_records_start_unpolled() -> None:
    assert records.new_create("T", 1, "RunInstances", 0.0)["polled"] is False
