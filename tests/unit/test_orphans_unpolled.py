"""Which tagged hosts are orphans: never a host HostFactory has or may still be given."""

from __future__ import annotations

from hostfactory_aws import orphans, records

RID = "req-1"
NOW = 1_000_000.0


def _inst(iid: str) -> dict:
    return {"InstanceId": iid, "InstanceType": "m5.large", "LaunchTime": NOW - 86_400,
            "State": {"Name": "running"}, "ClientToken": f"{RID}-0",
            "Tags": [{"Key": "hostfactory:provider", "Value": "p"},
                     {"Key": "hostfactory:requestId", "Value": RID}]}


def _rec(**kw: object) -> dict:
    rec = records.new_create("T", 1, "EC2Fleet", NOW - 86_400, "tok")
    rec.update({"launch": "done", "answered": True,
                "instances": {"i-1": {"units": 1.0, "state": "running"}}, **kw})
    return rec


def _find(rec: dict | None, *ids: str) -> dict[str, tuple[str, bool]]:
    snap = {"requests": {RID: rec} if rec else {}}
    return {o["instanceId"]: (o["reason"], o["canTerminate"])
            for o in orphans.find({i: _inst(i) for i in ids}, snap, "p", NOW)}


def test_an_answered_request_never_polled_keeps_its_hosts_however_old() -> None:
    assert _find(_rec(polled=False), "i-1") == {}
    assert orphans.overdue([], 1) == []


def test_hosts_after_the_final_answer_or_beyond_the_ask_are_orphans() -> None:
    rec = _rec(delivered=["i-1"], extra={"i-2": {"why": "beyond what was asked"}})
    got = _find(rec, "i-1", "i-2", "i-3")
    assert set(got) == {"i-2", "i-3"}
    assert got["i-3"][0].startswith("late") and got["i-3"][1]
    assert got["i-2"][0].startswith("beyond") and got["i-2"][1]


def test_a_launch_in_doubt_is_a_candidate_never_terminated() -> None:
    rec = _rec(launch="launching", answered=False, instances={}, doubt="journal lost")
    rows = orphans.find({"i-1": _inst("i-1")}, {"requests": {RID: rec}}, "p", NOW)
    assert [(r["instanceId"], r["canTerminate"]) for r in rows] == [("i-1", False)]
    assert orphans.overdue(rows, 1) == []


def test_new_records_start_unanswered_and_unpolled() -> None:
    rec = records.new_create("T", 1, "RunInstances", 0.0)
    assert rec["polled"] is False and rec["answered"] is False
