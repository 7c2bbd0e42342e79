"""records.py: what the state file's request records say about held capacity and hosts."""

from __future__ import annotations

import copy
import os
import socket
from typing import Any

from hostfactory_aws import records


def inst(units: float = 1.0, name: str = "", state: str = "running",
         return_id: str | None = None) -> dict[str, Any]:
    return {"units": units, "name": name, "type": "m5.large", "state": state,
            "returnId": return_id}


def create(template: str, units: int, launch: str = "done",
           instances: dict[str, Any] | None = None) -> dict[str, Any]:
    rec = records.new_create(template, units, "RunInstances", 1000.0)
    rec["launch"] = launch
    rec["instances"] = instances or {}
    return rec


def ret(machines: dict[str, Any]) -> dict[str, Any]:
    rec = records.new_return(2000.0)
    rec["machines"] = machines
    return rec


def state(**reqs: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "requests": dict(reqs)}


def test_new_request_ids_are_prefixed_and_unique() -> None:
    ids = {records.new_request_id("req") for _ in range(50)}
    assert len(ids) == 50
    assert all(i.startswith("req-") and len(i) == 40 for i in ids)
    assert records.new_request_id("ret").startswith("ret-")


def test_new_create_starts_launching() -> None:
    rec = records.new_create("T1", 4, "EC2Fleet", 123.0)
    assert rec["kind"] == "create" and rec["launch"] == "launching"
    assert rec["units"] == 4 and rec["instances"] == {} and rec["endedAt"] is None


def test_launching_request_holds_what_it_asked_for() -> None:
    data = state(r1=create("T1", 5, launch="launching"))
    assert records.held_units(data) == {"T1": 5.0}


def test_done_request_holds_its_live_instances_only() -> None:
    data = state(r1=create("T1", 10, instances={
        "i-1": inst(2.0), "i-2": inst(1.0, state="pending"),
        "i-3": inst(1.0, return_id="ret-x"), "i-4": inst(1.0, state="terminated"),
        "i-5": inst(1.0, state="shutting-down"), "i-6": inst(1.0, state="stopped")}))
    assert records.held_units(data) == {"T1": 3.0}


def test_unknown_launch_counts_instances_it_found() -> None:
    data = state(r1=create("T1", 10, launch="unknown", instances={"i-1": inst()}))
    assert records.held_units(data) == {"T1": 1.0}


def test_held_units_sums_per_template_and_ignores_returns() -> None:
    data = state(r1=create("T1", 2, instances={"i-1": inst(), "i-2": inst()}),
                 r2=create("T1", 3, launch="launching"),
                 r3=create("T2", 1, instances={"i-3": inst(4.0)}),
                 r4=ret({"i-1": {"name": "a", "refused": "", "requestId": "r1"}}))
    assert records.held_units(data) == {"T1": 5.0, "T2": 4.0}


def test_held_units_of_an_empty_state() -> None:
    assert records.held_units(state()) == {}


def test_names_index_and_owner_of() -> None:
    data = state(r1=create("T1", 2, instances={"i-1": inst(name="ip-10-0-0-1.ec2.internal"),
                                               "i-2": inst(name="")}),
                 r2=create("T2", 1, instances={"i-3": inst(name="10.0.0.3")}),
                 r3=ret({"i-9": {"name": "x", "refused": "", "requestId": "r1"}}))
    assert records.names_index(data) == {"ip-10-0-0-1.ec2.internal": "i-1", "10.0.0.3": "i-3"}
    assert records.owner_of(data) == {"i-1": "r1", "i-2": "r1", "i-3": "r2"}


def test_live_machines() -> None:
    data = state(r1=create("T1", 3, instances={
        "i-1": inst(name="h1"), "i-2": inst(name="h2", return_id="ret-1"),
        "i-3": inst(name="h3", state="terminated"), "i-4": inst(name="")}))
    assert records.live_machines(data) == [{"machineId": "i-1", "name": "h1"},
                                           {"machineId": "i-3", "name": "h3"},
                                           {"machineId": "i-4", "name": ""}]


def test_returned_ids_skip_refused() -> None:
    data = state(r1=ret({"i-1": {"name": "a", "refused": ""},
                         "i-2": {"name": "b", "refused": "not ours"}}),
                 r2=ret({"i-3": {"name": "c", "refused": ""}}),
                 r3=create("T1", 1, instances={"i-4": inst()}))
    assert records.returned_ids(data) == {"i-1", "i-3"}


# --- in-flight records of calls that may have died ---------------------------------------

def test_new_records_name_their_process() -> None:
    rec = records.new_create("T1", 1, "RunInstances", 0.0)
    assert rec["pid"] == os.getpid()
    assert rec["host"] == socket.gethostname()


def test_only_records_with_an_unwritten_answer_mark_are_reap_candidates() -> None:
    fresh = records.new_create("T1", 1, "RunInstances", 0.0, "tok")
    assert records.reap_candidate(fresh)
    assert not records.reap_candidate({**fresh, "answered": True})
    assert not records.reap_candidate({**fresh, "launch": "abandoned"})
    old_format = create("T1", 1, launch="launching")
    del old_format["answered"]  # written before the mark existed
    assert not records.reap_candidate(old_format)


def test_learn_caps_a_request_at_what_it_asked_and_keeps_late_hosts_apart() -> None:
    rid = "req-1"

    def tagged(iid: str, t: int) -> dict:
        return {"InstanceId": iid, "InstanceType": "m5.large", "LaunchTime": t,
                "State": {"Name": "running"},
                "Tags": [{"Key": "hostfactory:requestId", "Value": rid}]}

    rec = records.new_create("T1", 2, "EC2Fleet", 0.0, "tok")
    found = {"i-3": tagged("i-3", 30), "i-1": tagged("i-1", 10), "i-2": tagged("i-2", 20),
             "i-9": {**tagged("i-9", 5), "Tags": [{"Key": "hostfactory:requestId",
                                                    "Value": "req-other"}]}}
    assert records.request_index(found) == {rid: ["i-3", "i-1", "i-2"], "req-other": ["i-9"]}
    with_index = copy.deepcopy(rec)
    records.learn(with_index, rid, found, 100.0, records.request_index(found))
    records.learn(rec, rid, found, 100.0)
    assert rec == with_index  # the poll's one index teaches what a scan of the sweep would
    assert sorted(rec["instances"]) == ["i-1", "i-2"]  # first launched first
    assert rec["extra"]["i-3"]["why"] == "beyond what was asked"
    rec["delivered"] = ["i-1", "i-2"]
    records.learn(rec, rid, {**found, "i-4": tagged("i-4", 40)}, 200.0)
    assert rec["extra"]["i-4"]["why"] == "late"
    assert records.held_units({"requests": {rid: {**rec, "launch": "done"}}}) == {"T1": 2.0}


def test_a_host_no_sweep_lists_past_the_grace_is_gone() -> None:
    rec = create("T1", 1, launch="done", instances={"i-1": inst()})
    rec["createdAt"] = 0.0
    records.learn(rec, "req-1", {}, records.NOT_LISTED_GRACE_SEC - 1)
    assert rec["instances"]["i-1"]["state"] == "running"
    records.learn(rec, "req-1", {}, records.NOT_LISTED_GRACE_SEC + 1)
    assert rec["instances"]["i-1"]["state"] == "terminated"


def test_cleanup_backoff_doubles_from_a_minute_to_an_hour() -> None:
    rec = create("T1", 1, launch="done")
    delays = []
    for _ in range(9):
        records.cleanup_failed(rec, "UnauthorizedOperation: no", 0.0)
        delays.append(rec["cleanup"]["next"])
    assert delays[:4] == [60, 120, 240, 480] and delays[-1] == 3600
    assert rec["cleanup"]["attempts"] == 9
    assert not records.cleanup_due(rec, 3599) and records.cleanup_due(rec, 3600)
    assert records.stuck({"requests": {"req-1": rec}})["req-1"]["attempts"] == 9
