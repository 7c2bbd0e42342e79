"""AWS calls and imports per verb, counted (never timed) through the real scripts.

What keeps a verb fast at grid scale is the number of AWS round trips (each one is ~100 ms
to seconds against EC2, and counts against the account's API rate) and what a process
imports before it can answer. Both are deterministic, so they are asserted exactly.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from hostfactory_aws.cloud.apis.run_instances import BATCH
from tests.support.hostfactory import HostFactory

# Complete attributes (ncores too): getAvailableTemplates then needs no AWS call.
ATTRIBUTES = {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"],
              "ncores": ["Numeric", "1"], "nram": ["Numeric", "8192"]}


def write_templates(hf: HostFactory, *templates: dict[str, Any]) -> None:
    """Templates of no set size, over the sandbox's AMI and subnets; fields override."""
    hf.write_templates([hf.template(t["templateId"], **{
        "maxNumber": -1, "attributes": ATTRIBUTES, "vmType": None, **t}) for t in templates])


@pytest.fixture(autouse=True)
def _templates(hf: HostFactory) -> None:
    write_templates(hf, {"templateId": "RI", "providerApi": "RunInstances", "vmType": "m5.large"},
                    {"templateId": "Fleet", "providerApi": "EC2Fleet", "fleetType": "instant",
                     "vmTypes": {"m5.large": 1}})


def _status_input(ids: list[str]) -> dict:
    return {"requests": [{"requestId": r} for r in ids]}


def _hosts(answer: dict) -> list[dict[str, str]]:
    return [{"name": m["name"], "machineId": m["machineId"]}
            for r in answer["requests"] for m in r["machines"]]


def test_status_and_reclaim_polls_make_the_same_calls_for_1_or_30_requests(hf) -> None:
    first = hf.request_many("RI", 1, 2)
    answer, one = hf.counted("getRequestStatus", _status_input(first))
    assert [len(r["machines"]) for r in answer["requests"]] == [2]

    ids = first + hf.request_many("RI", 29, 2)
    answer, thirty = hf.counted("getRequestStatus", _status_input(ids))

    assert [r["requestId"] for r in answer["requests"]] == ids
    assert all(len(r["machines"]) == 2 for r in answer["requests"])
    assert one["DescribeInstances"] == 1  # 60 machines fit in one page of 1000
    assert thirty == one  # no call of any kind per request

    hosts = _hosts(answer)
    reclaimed, calls = hf.counted("getReturnRequests", {"machines": hosts})
    assert len(hosts) == 60 and reclaimed["requests"] == []
    assert calls == {"DescribeInstances": 1}  # 60 ids fit in one filter of 200


def test_fleet_status_poll_makes_the_same_calls_for_1_or_10_requests(hf) -> None:
    first = hf.request_many("Fleet", 1, 2)
    _, one = hf.counted("getRequestStatus", _status_input(first))
    ids = first + hf.request_many("Fleet", 9, 2)
    answer, ten = hf.counted("getRequestStatus", _status_input(ids))

    assert all(len(r["machines"]) == 2 for r in answer["requests"])
    assert one["DescribeInstances"] == 1
    assert ten == one


def test_request_machines_launches_in_batches(hf) -> None:
    count = BATCH + 1  # the smallest count that needs a second batch

    answer, calls = hf.counted("requestMachines",
                               {"template": {"templateId": "RI", "machineCount": count}})

    assert answer["requestId"].startswith("req-")
    assert f"launching {count} machines" in answer["message"]
    assert calls["RunInstances"] == math.ceil(count / BATCH) == 2


def test_available_templates_with_complete_attributes_need_no_aws(hf) -> None:
    hf.work_dir.mkdir(parents=True, exist_ok=True)  # the state exists: no missing-state sweep
    hf.state_path.write_text('{"version": 1, "requests": {}}')
    first = hf.imports("getAvailableTemplates", {})
    answer, calls = hf.counted("getAvailableTemplates", {})
    steady = hf.imports("getAvailableTemplates", {})

    assert [t["templateId"] for t in answer["templates"]] == ["RI", "Fleet"]
    assert calls == {}
    assert not {"boto3", "botocore"} & (first | steady)
    assert "jsonschema" in first  # new files: checked in full
    assert "jsonschema" not in steady  # unchanged since that check passed


def test_changed_templates_are_checked_again_in_full(hf) -> None:
    hf.ok("getAvailableTemplates", {})  # the current files pass and are remembered
    write_templates(hf, {"templateId": "RI", "providerApi": "RunInstances",
                         "vmType": "m5.large", "maxNumbr": 3})

    code, answer = hf.call("getAvailableTemplates", {})

    assert code == 0  # an unknown key is ignored, and named (issue 13)
    assert [t["templateId"] for t in answer["templates"]] == ["RI"]
    assert "template 'RI': unknown field 'maxNumbr'" in answer["message"]
    assert "did you mean 'maxNumber'" in answer["message"]


def test_attributes_filled_from_aws_once_per_instance_type(hf) -> None:
    write_templates(hf, {"templateId": "Bare", "providerApi": "RunInstances",
                         "vmType": "m5.large", "attributes": {}})

    answer, first = hf.counted("getAvailableTemplates", {})
    again, second = hf.counted("getAvailableTemplates", {})

    # (and, this being a new install, the one sweep that makes the missing state file)
    assert first == {"DescribeInstanceTypes": 1, "DescribeInstances": 1}
    assert second == {}
    attrs = answer["templates"][0]["attributes"]
    assert attrs["ncpus"] == ["Numeric", "2"] and attrs["nram"] == ["Numeric", "8192"]
    assert again == answer
