"""Issue 4, on the wire: throttling and lost replies on every AWS call the verbs make.

Each test runs the real scripts against moto's server with faults injected between them
(tests/support/faults.py). What a user checks afterwards is EC2 itself: exactly the machines
asked for, none twice, none lost, and an answer from every call that can give one.

The figures (faults injected, machines lost, duplicates) are merged into
``<pytest basetemp>/reliability-figures.json`` (or $HF_RELIABILITY_FIGURES) by every
reliability test, and printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.hostfactory import (
    FLEET_OD,
    REQUEST_TAG,
    RETURN_TAG,
    RI,
    WEIGHTS,
    HostFactory,
    tags_of,
)

FIGURES_FILE = "reliability-figures.json"
# Figures that add up across tests into the totals of docs/reliability.md.
TOTALS = ("faults_injected", "kills_delivered", "kills_mid_call", "concurrent_calls",
          "machines_lost", "duplicates", "orphans_left")


def record_figures(factory: pytest.TempPathFactory, test: str, figures: dict[str, Any]) -> Path:
    """Merge one test's figures into the session's JSON (and print them for ``-s``).

    The file is ``<basetemp>/reliability-figures.json``, or $HF_RELIABILITY_FIGURES.
    """
    path = Path(os.environ.get("HF_RELIABILITY_FIGURES") or
                factory.getbasetemp() / FIGURES_FILE)
    with open(str(path) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {"tests": {}}
        data["tests"][test] = figures
        data["totals"] = {k: sum(t.get(k, 0) for t in data["tests"].values()) for k in TOTALS}
        path.write_text(json.dumps(data, indent=1, sort_keys=True))
    print(f"\nreliability figures {test}: {json.dumps(figures, sort_keys=True)} -> {path}")
    return path


def tagged(hf: HostFactory, rid: str, key: str = REQUEST_TAG) -> dict[str, dict[str, Any]]:
    """The instances EC2 holds that carry ``key=rid``, whatever their state."""
    return {iid: inst for iid, inst in hf.server.instances().items()
            if tags_of(inst).get(key) == rid}


def state_of(inst: dict[str, Any]) -> str:
    return inst["State"]["Name"]


def units(insts: dict[str, dict[str, Any]]) -> int:
    return sum(WEIGHTS.get(i["InstanceType"], 1) for i in insts.values())


def fleets_of(hf: HostFactory, rid: str) -> list[dict[str, Any]]:
    return [f for f in hf.server.ec2.describe_fleets()["Fleets"]
            if tags_of(f).get(REQUEST_TAG) == rid]


class Faults:
    """Arms faults for one call at a time and checks each one really fired."""

    def __init__(self, hf: HostFactory) -> None:
        self.hf = hf
        self.injected = 0

    def call(self, verb: str, payload: Any, faults: dict[str, int], code: str =
             "RequestLimitExceeded", status: int = 400,
             after: bool = False) -> tuple[int, dict[str, Any]]:
        """Run ``verb`` with each action in ``faults`` failing that many times."""
        rules = [self.hf.server.faults.add(action, code=code, status=status, times=times,
                                           after=after) for action, times in faults.items()]
        try:
            result = self.hf.call(verb, payload)
        finally:
            self.hf.server.faults.clear()
        fired = {r.action: r.fired for r in rules}
        self.injected += sum(fired.values())
        # every API named was really called, and failed as often as asked
        assert fired == faults, (verb, fired, result)
        return result


def test_every_api_throttled_still_answers_exactly(hf: HostFactory,
                                                   tmp_path_factory: pytest.TempPathFactory
                                                   ) -> None:
    """RequestLimitExceeded on each call of the whole cycle, with 2 retries.

    Twice on the launches (where a blind retry would double machines), once elsewhere:
    botocore's throttling backoff is up to 1 s, then 2 s, and the suite must stay fast.
    """
    hf.write_config(AWS_REQUEST_RETRY_ATTEMPTS=2)
    templates = hf.default_templates()
    # a template whose ncpus/nram getAvailableTemplates must ask EC2 for
    templates.append({"templateId": "Bare", "maxNumber": 5, "providerApi": "RunInstances",
                      "imageId": hf.image_id, "vmType": "c5.large",
                      "subnetId": hf.subnets[0]})
    hf.write_templates(templates)
    f = Faults(hf)

    code, answer = f.call("getAvailableTemplates", {}, {"DescribeInstanceTypes": 1})
    assert code == 0, answer
    bare = {t["templateId"]: t for t in answer["templates"]}["Bare"]
    assert bare["attributes"]["ncpus"] == ["Numeric", "2"], bare
    assert bare["attributes"]["nram"] == ["Numeric", "4096"], bare

    code, answer = f.call("requestMachines", {"template": {"templateId": RI, "machineCount": 2}},
                          {"RunInstances": 2})
    assert code == 0, answer
    ri = answer["requestId"]
    assert len(tagged(hf, ri)) == 2  # three attempts, one launch

    code, answer = f.call("requestMachines",
                          {"template": {"templateId": FLEET_OD, "machineCount": 3}},
                          {"CreateLaunchTemplate": 1, "CreateFleet": 2, "DeleteLaunchTemplate": 1})
    assert code == 0, answer
    fl = answer["requestId"]
    assert len(fleets_of(hf, fl)) == 1
    fleet_ids = {iid for g in fleets_of(hf, fl)[0]["Instances"] for iid in g["InstanceIds"]}
    assert set(tagged(hf, fl)) == fleet_ids and units(tagged(hf, fl)) >= 3
    assert hf.server.ec2.describe_launch_templates()["LaunchTemplates"] == []

    code, answer = f.call("getRequestStatus", {"requests": [{"requestId": ri},
                                                            {"requestId": fl}]},
                          {"DescribeInstances": 1})
    assert code == 0, answer
    by_id = {a["requestId"]: a for a in answer["requests"]}
    for rid in (ri, fl):
        assert by_id[rid]["status"] == "complete", by_id[rid]
        assert {m["machineId"] for m in by_id[rid]["machines"]} == set(tagged(hf, rid))
    ri_machines = by_id[ri]["machines"]
    back = by_id[fl]["machines"] + ri_machines[:1]

    code, answer = f.call("requestReturnMachines", {"machines": [
        {"name": m["name"], "machineId": m["machineId"]} for m in back]},
        {"DescribeInstances": 1, "CreateTags": 1, "TerminateInstances": 1})
    assert code == 0, answer
    ret = answer["requestId"]
    now = hf.server.instances()
    assert {iid for iid, i in now.items() if state_of(i) == "terminated"} == {
        m["machineId"] for m in back}
    assert set(tagged(hf, ret, RETURN_TAG)) == {m["machineId"] for m in back}

    code, answer = f.call("getRequestStatus", {"requests": [{"requestId": ret},
                                                            {"requestId": ri},
                                                            {"requestId": fl}]},
                          {"DescribeInstances": 1, "DeleteFleets": 1})
    assert code == 0, answer
    by_id = {a["requestId"]: a for a in answer["requests"]}
    assert by_id[ret]["status"] == "complete", by_id[ret]
    assert {m["machineId"] for m in by_id[ret]["machines"]} == {m["machineId"] for m in back}
    kept = {m["machineId"]: m for m in by_id[ri]["machines"]}[ri_machines[1]["machineId"]]
    assert (kept["result"], kept["status"]) == ("succeed", "running")
    assert fleets_of(hf, fl)[0]["FleetState"] in ("deleted", "deleted_terminating")

    code, answer = f.call("getReturnRequests", {"machines": [
        {"name": kept["name"], "machineId": kept["machineId"]}]}, {"DescribeInstances": 1})
    assert code == 0, answer
    assert answer["requests"] == []

    assert sum(1 for i in hf.server.instances().values() if state_of(i) == "running") == 1
    assert hf.logged_calls() == hf.made  # every call answered, and says so in the log
    record_figures(tmp_path_factory, "throttled_cycle", {
        "faults_injected": f.injected, "calls": sum(hf.made.values()),
        "calls_failed": sum(n for (_, ok), n in hf.made.items() if not ok),
        "machines_lost": 0, "duplicates": units(tagged(hf, ri)) - 2})


def test_throttling_beyond_retries_is_reported_never_guessed(
        hf: HostFactory, tmp_path_factory: pytest.TempPathFactory) -> None:
    """More throttles than attempts: the call says the outcome is unknown, loses nothing."""
    hf.write_config(AWS_REQUEST_RETRY_ATTEMPTS=1)  # two attempts in all
    f = Faults(hf)

    # RunInstances refused on both attempts: nothing launched, and HostFactory gets an id
    # it can poll (AWS did nothing, but in general the launcher cannot know that).
    code, answer = f.call("requestMachines", {"template": {"templateId": RI, "machineCount": 1}},
                          {"RunInstances": 2})
    assert code == 0, answer
    refused = answer["requestId"]
    assert "outcome unknown" in answer["message"], answer
    assert "RequestLimitExceeded" in answer["message"], answer
    assert tagged(hf, refused) == {}

    # Both replies lost after EC2 launched (500 after the work): same ClientToken, one launch,
    # and the machines are found by their tag although the launcher never heard of them.
    code, answer = f.call("requestMachines", {"template": {"templateId": RI, "machineCount": 2}},
                          {"RunInstances": 2}, code="InternalError", status=500, after=True)
    assert code == 0, answer
    unheard = answer["requestId"]
    assert "outcome unknown" in answer["message"], answer
    assert len(tagged(hf, unheard)) == 2

    statuses = {a["requestId"]: a for a in hf.status(refused, unheard)}
    assert statuses[refused]["status"] == "running"  # not known yet: HostFactory asks again
    assert statuses[refused]["machines"] == []
    assert statuses[unheard]["status"] == "complete", statuses[unheard]
    assert {m["machineId"] for m in statuses[unheard]["machines"]} == set(tagged(hf, unheard))
    machines = statuses[unheard]["machines"]
    # the unknown launch keeps its reservation: a retry cannot push the template past max
    assert hf.templates()[RI]["availableNumber"] == 10 - 1 - 2

    # A poll that cannot see EC2 fails loudly and changes nothing.
    before = hf.state_bytes()
    code, answer = f.call("getRequestStatus", {"requests": [{"requestId": unheard}]},
                          {"DescribeInstances": 2})
    assert code == 1, answer
    assert "RequestLimitExceeded" in answer["message"], answer
    assert "outcome unknown" in answer["message"] and "ask again" in answer["message"], answer
    assert hf.state_bytes() == before

    # A return whose TerminateInstances is throttled out: failed, nothing marked returned,
    # the machine still held and running, and the retried return does it.
    victim = machines[0]
    before = hf.state()
    code, answer = f.call("requestReturnMachines", {"machines": [
        {"name": victim["name"], "machineId": victim["machineId"]}]}, {"TerminateInstances": 2})
    assert code == 1, answer
    assert "TerminateInstances" in answer["message"], answer
    assert "RequestLimitExceeded" in answer["message"], answer
    assert "outcome unknown" in answer["message"], answer
    assert hf.state()["requests"] == before["requests"]
    assert state_of(hf.server.instances()[victim["machineId"]]) == "running"
    again = hf.status(unheard)[0]
    assert again["status"] == "complete"
    assert sorted((m["machineId"], m["status"]) for m in again["machines"]) == sorted(
        (m["machineId"], "running") for m in machines)

    ret = hf.give_back([victim])
    assert hf.status(ret)[0]["status"] == "complete"
    now = hf.server.instances()
    assert state_of(now[victim["machineId"]]) == "terminated"
    assert [state_of(now[m["machineId"]]) for m in machines[1:]] == ["running"]
    record_figures(tmp_path_factory, "throttled_out", {
        "faults_injected": f.injected, "calls": sum(hf.made.values()),
        "calls_failed": sum(n for (_, ok), n in hf.made.items() if not ok),
        "machines_lost": 0, "duplicates": len(tagged(hf, unheard)) - 2})


@pytest.mark.parametrize("tid", [RI, FLEET_OD])
def test_lost_reply_does_not_launch_twice(hf: HostFactory, tid: str,
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    """EC2 did the work, its answer never came back: botocore retries, EC2 replays."""
    hf.write_config(AWS_REQUEST_RETRY_ATTEMPTS=2)
    f = Faults(hf)
    count = 3
    faults = {"RunInstances": 1} if tid == RI else {"CreateLaunchTemplate": 1, "CreateFleet": 2}
    code, answer = f.call("requestMachines", {"template": {"templateId": tid,
                                                           "machineCount": count}},
                          faults, code="InternalError", status=500, after=True)
    assert code == 0, answer
    rid = answer["requestId"]
    launched = tagged(hf, rid)
    if tid == RI:
        assert len(launched) == count
    else:
        fleets = fleets_of(hf, rid)
        assert len(fleets) == 1, fleets
        assert set(launched) == {i for g in fleets[0]["Instances"] for i in g["InstanceIds"]}
        # an instant fleet gives at least the units asked, by at most one machine too many
        assert count <= units(launched) < count + max(WEIGHTS.values())
        assert hf.server.ec2.describe_launch_templates()["LaunchTemplates"] == []
    assert set(hf.server.instances()) == set(launched)  # nothing under another id either
    done = hf.status(rid)[0]
    assert done["status"] == "complete", done
    assert {m["machineId"] for m in done["machines"]} == set(launched)
    assert all(m["result"] == "succeed" for m in done["machines"]), done
    calls = hf.server.calls()
    for action, times in faults.items():
        assert calls[action] == times + 1, calls  # each lost reply cost one retry
    record_figures(tmp_path_factory, f"lost_reply[{tid}]", {
        "faults_injected": f.injected, "machines_lost": 0,
        "duplicates": max(0, len(launched) - count) if tid == RI else len(fleets) - 1})
