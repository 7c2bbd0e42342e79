"""getRequestStatus, getReturnRequests and the never-terminate-a-stranger rule, end to end."""

from __future__ import annotations

import shutil

from tests.support.hostfactory import CHANGING_ACTIONS, RI, HostFactory, tags_of


def test_never_terminates_an_instance_it_did_not_launch(hf: HostFactory) -> None:
    ec2 = hf.server.ec2
    stranger = ec2.run_instances(ImageId=hf.image_id, InstanceType="m5.large", MinCount=1,
                                 MaxCount=1, SubnetId=hf.subnets[0])["Instances"][0]
    own = hf.wait(hf.request(RI, 1))["machines"][0]

    ret = hf.give_back([own, {"name": stranger["PrivateDnsName"],
                              "machineId": stranger["InstanceId"]}])
    answer = hf.wait(ret)
    assert answer["status"] == "complete_with_error", answer
    results = {m["machineId"]: m for m in answer["machines"]}
    assert results[own["machineId"]]["result"] == "succeed"
    refused = results[stranger["InstanceId"]]
    assert refused["result"] == "fail"
    assert "not launched by provider" in refused["message"], refused

    now = hf.server.instances()
    assert now[stranger["InstanceId"]]["State"]["Name"] == "running"
    assert tags_of(now[stranger["InstanceId"]]) == {}  # not even tagged
    assert now[own["machineId"]]["State"]["Name"] == "terminated"


def test_poll_cost_does_not_grow_with_requests(hf: HostFactory) -> None:
    templates = hf.default_templates()
    templates[0]["maxNumber"] = 40
    hf.write_templates(templates)
    payload = {"template": {"templateId": RI, "machineCount": 1}}
    # setup only (the polls measured below run through the scripts): 20 real requests,
    # made by the plugin's own entrypoint in one process to spare 20 interpreter starts
    answers = hf.call_in_one_process("requestMachines", [payload] * 20)
    assert [code for code, _ in answers] == [0] * 20, answers
    ids = [a["requestId"] for _, a in answers]
    assert len(set(ids)) == 20

    hf.server.reset_calls()
    one = hf.status(ids[0])
    calls_one = hf.server.calls()
    hf.server.reset_calls()
    twenty = hf.status(*ids)
    calls_twenty = hf.server.calls()
    assert one[0]["status"] == "complete"
    assert [a["status"] for a in twenty] == ["complete"] * 20
    assert calls_one.get("DescribeInstances", 0) >= 1
    assert calls_twenty.get("DescribeInstances") == calls_one["DescribeInstances"]
    assert sum(len(a["machines"]) for a in twenty) == 20 == len(hf.server.instances())


def test_lost_state_file_is_rebuilt_from_tags(hf: HostFactory) -> None:
    rid = hf.request(RI, 3)
    machines = hf.wait(rid)["machines"]
    ret = hf.give_back(machines[:1])
    hf.wait(ret)
    before = {a["requestId"]: a for a in hf.status(rid, ret)}

    shutil.rmtree(hf.work_dir)  # the work dir is gone (new host, failover, an rm -rf)
    unknown = "req-00000000-0000-0000-0000-000000000000"
    after = {a["requestId"]: a for a in hf.status(rid, ret, unknown)}

    def summary(answer: dict) -> dict[str, tuple[str, str]]:
        return {m["machineId"]: (m["result"], m["status"]) for m in answer["machines"]}

    for r in (rid, ret):
        assert summary(after[r]) == summary(before[r]), (before[r], after[r])
        assert after[r]["status"] == before[r]["status"]
    assert len(after[rid]["machines"]) == 3 and len(after[ret]["machines"]) == 1
    lost = after[unknown]
    assert lost["status"] == "complete_with_error" and lost["machines"] == []
    assert unknown in lost["message"] and "unknown" in lost["message"]
    # the poll put what it learnt back into a state file: capacity is counted again
    assert hf.state_path.is_file()
    assert hf.templates()[RI]["availableNumber"] == 10 - 2


def test_get_return_requests_reports_what_the_cloud_took(hf: HostFactory) -> None:
    machines = hf.wait(hf.request(RI, 3))["machines"]
    returned, reclaimed, healthy = machines
    hf.wait(hf.give_back([returned]))
    hf.server.ec2.terminate_instances(InstanceIds=[reclaimed["machineId"]])  # the console
    hf.server.reset_calls()

    held = [{"name": m["name"], "machineId": m["machineId"]} for m in machines]
    expected = [{"machine": reclaimed["name"], "machineId": reclaimed["machineId"],
                 "gracePeriod": 0}]
    answer = hf.ok("getReturnRequests", {"machines": held})
    assert answer["requests"] == expected, answer
    # HostFactory may send {}: the plugin then checks the machines it knows it holds
    assert hf.ok("getReturnRequests", {})["requests"] == expected
    assert hf.server.instances()[healthy["machineId"]]["State"]["Name"] == "running"

    rule = hf.server.faults.add("DescribeInstances", code="Unavailable", status=503, times=10)
    code, answer = hf.call("getReturnRequests", {"machines": held})
    assert rule.fired >= 1
    assert code == 1 and "requests" not in answer, answer
    assert "DescribeInstances" in answer["message"] and "Unavailable" in answer["message"]
    calls = hf.server.calls()
    assert not {a: n for a, n in calls.items() if a in CHANGING_ACTIONS}, calls
