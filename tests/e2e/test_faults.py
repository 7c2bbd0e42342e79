"""AWS misbehaving on the wire (throttling, lost replies, capacity, refusals) and many
HostFactory calls at once."""

from __future__ import annotations

import json

from tests.support.hostfactory import PROVIDER_TAG, RI, HostFactory, tags_of


def test_throttled_describe_is_retried(hf: HostFactory) -> None:
    hf.write_config(AWS_REQUEST_RETRY_ATTEMPTS=2)
    rid = hf.request(RI, 1)
    rule = hf.server.faults.add("DescribeInstances", code="RequestLimitExceeded", times=2)
    code, answer = hf.call("getRequestStatus", {"requests": [{"requestId": rid}]})
    assert rule.fired == 2  # both throttles were served before the answer
    assert code == 0, answer
    assert answer["requests"][0]["status"] == "complete"
    assert len(answer["requests"][0]["machines"]) == 1


def test_lost_run_instances_reply(hf: HostFactory) -> None:
    """EC2 launched, but no answer ever came back, not even to botocore's retry (config
    allows 1): the retry must not launch again, and the launch is found by its tags."""
    rule = hf.server.faults.add("RunInstances", code="InternalError", status=500, after=True,
                                times=2)
    rid = hf.request(RI, 2)
    assert rule.fired == 2
    launched = hf.server.instances()
    assert len(launched) == 2  # the retry carried the same ClientToken
    done = hf.wait(rid)
    assert done["status"] == "complete", done
    assert {m["machineId"] for m in done["machines"]} == set(launched)
    assert hf.templates()[RI]["availableNumber"] == 10 - 2
    ret = hf.give_back(done["machines"])
    assert hf.wait(ret)["status"] == "complete"
    assert hf.templates()[RI]["availableNumber"] == 10


def test_capacity_short_subnet_falls_over_to_the_next(hf: HostFactory) -> None:
    rule = hf.server.faults.add("RunInstances", code="InsufficientInstanceCapacity")
    rid = hf.request(RI, 2)
    assert rule.fired == 1
    done = hf.wait(rid)
    assert done["status"] == "complete", done
    subnets = {i["SubnetId"] for i in hf.server.instances().values()}
    assert subnets == {hf.subnets[1]}


def test_refused_launch_leaves_nothing_behind(hf: HostFactory) -> None:
    before = hf.state_bytes()
    hf.server.faults.add("RunInstances", code="UnauthorizedOperation", status=403, times=5)
    code, answer = hf.call("requestMachines",
                           {"template": {"templateId": RI, "machineCount": 1}})
    assert code == 1 and "UnauthorizedOperation" in answer["message"], answer
    assert "requestId" not in answer
    assert hf.server.instances() == {}
    after = hf.state_bytes()
    if before is None and after is not None:  # created on the way: must hold no request
        assert json.loads(after)["requests"] == {}
    else:
        assert after == before
    assert hf.templates()[RI]["availableNumber"] == 10


def test_concurrent_requests_never_exceed_max_number(hf: HostFactory) -> None:
    payload = {"template": {"templateId": RI, "machineCount": 2}}
    answers = hf.call_many("requestMachines", [payload] * 8, parallel=8)
    granted = [a for code, a in answers if code == 0]
    refused = [a for code, a in answers if code == 1]
    assert len(granted) == 5, answers  # 10 slots, 2 each: five fit, no slot is lost
    for answer in refused:
        assert "machineCount" in answer["message"], answer
    launched = hf.server.instances()
    assert len(launched) == 10
    assert {tags_of(i)[PROVIDER_TAG] for i in launched.values()} == {"awsinst"}
    state = hf.state()
    assert sorted(state["requests"]) == sorted(a["requestId"] for a in granted)
    assert hf.templates()[RI]["availableNumber"] == 0
    assert hf.logged_calls() == hf.made
