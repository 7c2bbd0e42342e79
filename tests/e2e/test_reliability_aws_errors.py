"""Issue 11, cases 2, 7 and 12: what a failed AWS call lets requestMachines conclude, and a
verb that answers within its deadline whatever the endpoint does.

- a proxy's or gateway's 502/504 HTML page after EC2 launched: the launch is kept and
  answered from the tags, never forgotten and relaunched by HostFactory's retry;
- nothing sent (connection refused, no credentials): exit 1 naming the cause, no record;
- a quota stops at once naming the quota, ``Unsupported`` moves on to the next subnet;
- a hung endpoint: one JSON document within VERB_DEADLINE_SEC.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Iterator

import pytest

from tests.e2e.test_reliability_faults import record_figures
from tests.support.hostfactory import FLEET_OD, PROVIDER_TAG, REQUEST_TAG, RI, HostFactory, tags_of


def running(hf: HostFactory) -> dict[str, dict[str, Any]]:
    return {i: x for i, x in hf.server.instances().items()
            if x["State"]["Name"] in ("pending", "running")}


def leaked(hf: HostFactory) -> list[str]:
    """Running instances of this provider whose request the state does not hold."""
    known = set(hf.state()["requests"]) if hf.state_path.exists() else set()
    return [i for i, x in running(hf).items()
            if tags_of(x).get(PROVIDER_TAG) == "awsinst"
            and tags_of(x).get(REQUEST_TAG) not in known]


@pytest.mark.parametrize("status", [502, 504])
@pytest.mark.parametrize("tid", [RI, FLEET_OD])
def test_gateway_page_after_launch_keeps_the_launch(
        hf: HostFactory, tid: str, status: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Case 2: EC2 launched, a gateway answered an HTML page on every attempt."""
    hf.write_config(AWS_REQUEST_RETRY_ATTEMPTS=1)
    action = "RunInstances" if tid == RI else "CreateFleet"
    rule = hf.server.faults.add(action, status=status, html=True, after=True, times=2)
    code, answer = hf.call("requestMachines", {"template": {"templateId": tid,
                                                            "machineCount": 2}})
    assert rule.fired == 2
    assert code == 0, answer  # HostFactory polls this id instead of launching again
    rid = answer["requestId"]
    assert "outcome unknown" in answer["message"] and str(status) in answer["message"]
    assert leaked(hf) == []
    done = hf.wait(rid)
    assert done["status"] == "complete", done
    launched = {i for i, x in running(hf).items() if tags_of(x).get(REQUEST_TAG) == rid}
    assert {m["machineId"] for m in done["machines"]} == launched
    assert 1 <= len(launched) <= 2  # EC2 Fleet weights: 2 units may be one m5.xlarge
    assert len(running(hf)) == len(launched)  # the retry carried the same ClientToken
    record_figures(tmp_path_factory, f"gateway_{status}_{tid}", {
        "faults_injected": rule.fired, "machines_lost": 0, "duplicates": 0,
        "orphans_left": len(leaked(hf))})


def test_gateway_page_before_launch_is_still_unknown_never_a_refusal(hf: HostFactory) -> None:
    """A 502 page may come from a gateway in front of EC2 whether EC2 acted or not."""
    hf.write_config(AWS_REQUEST_RETRY_ATTEMPTS=0)
    hf.server.faults.add("RunInstances", status=502, html=True)
    code, answer = hf.call("requestMachines", {"template": {"templateId": RI,
                                                            "machineCount": 1}})
    assert code == 0 and "outcome unknown" in answer["message"], answer
    assert answer["requestId"] in hf.state()["requests"]
    assert hf.server.instances() == {}


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: connections are refused


def test_refused_connection_is_not_sent_exit_1_naming_the_cause(
        hf: HostFactory, closed_port: int) -> None:
    """Case 12: nothing reached AWS: no 'outcome unknown', no record left to fail polls."""
    hf.write_config(AWS_ENDPOINT_URL=f"http://127.0.0.1:{closed_port}",
                    AWS_REQUEST_RETRY_ATTEMPTS=1)
    start = time.monotonic()
    code, answer = hf.call("requestMachines", {"template": {"templateId": RI,
                                                            "machineCount": 1}})
    assert code == 1, answer
    assert "not sent to AWS" in answer["message"], answer
    assert "AWS_ENDPOINT_URL" in answer["message"], answer
    assert "outcome unknown" not in answer["message"]
    assert "requestId" not in answer
    assert not hf.state_path.exists() or hf.state()["requests"] == {}
    assert time.monotonic() - start < 30


def test_missing_credentials_is_not_sent(hf: HostFactory) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        hf.env.pop(key, None)
    code, answer = hf.call("requestMachines", {"template": {"templateId": RI,
                                                            "machineCount": 1}})
    assert code == 1, answer
    assert "NoCredentialsError" in answer["message"], answer
    assert "AWS_CREDENTIAL_FILE" in answer["message"]
    assert not hf.state_path.exists() or hf.state()["requests"] == {}


def test_quota_stops_at_once_naming_the_quota(hf: HostFactory) -> None:
    rule = hf.server.faults.add("RunInstances", code="VcpuLimitExceeded", times=5)
    code, answer = hf.call("requestMachines", {"template": {"templateId": RI,
                                                            "machineCount": 1}})
    assert rule.fired == 1  # the second subnet is not tried: the quota is the account's
    assert code == 1 and "Running On-Demand" in answer["message"], answer
    assert hf.state()["requests"] == {}


def test_unsupported_in_one_zone_moves_on(hf: HostFactory) -> None:
    rule = hf.server.faults.add("RunInstances", code="Unsupported")
    rid = hf.request(RI, 1)
    assert rule.fired == 1
    assert hf.wait(rid)["status"] == "complete"
    assert {i["SubnetId"] for i in running(hf).values()} == {hf.subnets[1]}


def test_fresh_launch_template_not_found_is_retried(hf: HostFactory) -> None:
    rule = hf.server.faults.add("CreateFleet", code="InvalidLaunchTemplateId.NotFound")
    rid = hf.request(FLEET_OD, 2)
    assert rule.fired == 1
    assert hf.wait(rid)["status"] == "complete"
    assert leaked(hf) == []


INSTANT_FLEET_TEMPLATE_MISS = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<CreateFleetResponse '
    b'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>hf-fault</requestId>'
    b"<fleetId>fleet-00000000-0000-4000-8000-00000000f1ee</fleetId><errorSet><item>"
    b"<lifecycle>on-demand</lifecycle><errorCode>InvalidLaunchTemplateId.NotFound</errorCode>"
    b"<errorMessage>The specified launch template, with template ID lt-0, does not exist."
    b"</errorMessage></item></errorSet><fleetInstanceSet/></CreateFleetResponse>")


def test_fresh_template_miss_inside_an_instant_fleets_reply_is_retried(
        hf: HostFactory) -> None:
    """An instant fleet reports the template EC2 does not see yet in its reply's Errors,
    having launched nothing; the retry must not reuse the ClientToken (EC2 would replay
    that empty reply)."""
    rule = hf.server.faults.add("CreateFleet", reply=INSTANT_FLEET_TEMPLATE_MISS)
    rid = hf.request(FLEET_OD, 2)
    assert rule.fired == 1
    answer = hf.wait(rid)
    assert answer["status"] == "complete" and len(answer["machines"]) == 2
    assert leaked(hf) == []
    assert "not visible yet; retrying" in hf.log_text()


@pytest.fixture
def hung_endpoint() -> Iterator[str]:
    """A socket on loopback that accepts connections and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    try:
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
    finally:
        s.close()


@pytest.mark.parametrize("verb, payload", [
    ("requestMachines", {"template": {"templateId": RI, "machineCount": 1}}),
    ("getRequestStatus", {"requests": [{"requestId": "req-00000000-0000-4000-8000-"
                                                      "000000000000"}]}),
])
def test_hung_endpoint_answers_within_the_deadline(
        hf: HostFactory, hung_endpoint: str, verb: str, payload: dict[str, Any],
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Case 7: with 60 s read timeouts and 4 retries configured, a hung endpoint would
    hold the call for minutes; the verb's deadline cuts them down."""
    deadline = 10
    hf.write_config(AWS_ENDPOINT_URL=hung_endpoint, AWS_READ_TIMEOUT_MS=60000,
                    AWS_REQUEST_RETRY_ATTEMPTS=4, VERB_DEADLINE_SEC=deadline)
    start = time.monotonic()
    code, answer = hf.call(verb, payload)  # check_output: exactly one JSON document
    took = time.monotonic() - start
    assert took < deadline + 3, took  # + the interpreter's start, before the clock runs
    # Sent and unanswered (the usual case), or, on a machine so loaded that too little of
    # the deadline was left once boto3 was up, not started at all: never a hang.
    if "VerbDeadlineReached" in answer.get("message", ""):
        assert code == 1 and "outcome unknown" not in answer["message"], answer
        assert not hf.state_path.exists() or hf.state()["requests"] == {}
    elif verb == "requestMachines":
        assert code == 0 and "outcome unknown" in answer["message"], answer
        assert answer["requestId"] in hf.state()["requests"]  # sent: may have launched
    else:
        assert code == 1 and "outcome unknown" in answer["message"], answer
    record_figures(tmp_path_factory, f"hung_endpoint_{verb}", {
        "deadline_sec": deadline, "answered_in_sec": round(took, 2)})
