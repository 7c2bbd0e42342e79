"""AWS calls per verb at 1, 100 and 5,000 machines, and for many open requests.

moto needs minutes to launch and list thousands of instances, so here EC2 is a small
in-memory stand-in behind the botocore client (``Aws.client``) that enforces EC2's own
limits: at most 1,000 instances per DescribeInstances page, 200 values per filter, 1,000
ids per CreateTags or TerminateInstances. Everything above the client is the real code, run
in-process as HostFactory's scripts run it: Aws.call/paginate with its call counter, the
verbs, the state file. Counted, never timed (bench/ does the timing).
"""

from __future__ import annotations

import datetime
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import session
from hostfactory_aws.invoke_provider import run

PAGE, FILTER_VALUES, IDS_PER_CALL = 1000, 200, 1000


def _refuse(operation: str, message: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": "InvalidParameterValue", "Message": message}},
                       operation)


class FakeEc2:
    """The few EC2 operations RunInstances templates use, with EC2's limits."""

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        self.calls: dict[str, int] = {}

    def _count(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1

    def run_instances(self, **p: Any) -> dict[str, Any]:
        self._count("RunInstances")
        tags = [t for s in p.get("TagSpecifications", []) if s["ResourceType"] == "instance"
                for t in s["Tags"]]
        out = []
        for _ in range(p["MaxCount"]):
            n = len(self.instances) + 1
            inst = {"InstanceId": f"i-{n:017x}", "State": {"Name": "running"},
                    "InstanceType": p["InstanceType"], "SubnetId": p.get("SubnetId"),
                    "PrivateIpAddress": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
                    "PrivateDnsName": f"ip-{n}.ec2.internal", "Tags": list(tags),
                    "LaunchTime": datetime.datetime.now(datetime.timezone.utc)}
            self.instances[inst["InstanceId"]] = inst
            out.append(dict(inst))
        return {"Instances": out}

    def describe_instances(self, Filters: list[dict[str, Any]], MaxResults: int,  # noqa: N803
                           NextToken: str = "0") -> dict[str, Any]:
        self._count("DescribeInstances")
        if not 5 <= MaxResults <= PAGE:
            raise _refuse("DescribeInstances", f"MaxResults {MaxResults}")
        for f in Filters:
            if len(f["Values"]) > FILTER_VALUES:
                raise _refuse("DescribeInstances", f"{len(f['Values'])} values in {f['Name']}")
        match = [i for i in self.instances.values() if all(_passes(i, f) for f in Filters)]
        start = int(NextToken)
        page = {"Reservations": [{"Instances": [dict(i) for i in
                                                match[start:start + MaxResults]]}]}
        if start + MaxResults < len(match):
            page["NextToken"] = str(start + MaxResults)
        return page

    def create_tags(self, Resources: list[str], Tags: list[dict[str, str]]) -> dict:  # noqa: N803
        self._count("CreateTags")
        if len(Resources) > IDS_PER_CALL:
            raise _refuse("CreateTags", f"{len(Resources)} resources")
        for iid in Resources:
            inst = self.instances[iid]
            keys = {t["Key"] for t in Tags}
            inst["Tags"] = [t for t in inst["Tags"] if t["Key"] not in keys] + list(Tags)
        return {}

    def terminate_instances(self, InstanceIds: list[str]) -> dict:  # noqa: N803
        self._count("TerminateInstances")
        if len(InstanceIds) > IDS_PER_CALL:
            raise _refuse("TerminateInstances", f"{len(InstanceIds)} instances")
        for iid in InstanceIds:
            self.instances[iid]["State"] = {"Name": "terminated"}
        return {"TerminatingInstances": []}


def _passes(inst: dict[str, Any], f: dict[str, Any]) -> bool:
    name = f["Name"]
    if name.startswith("tag:"):
        value = tagmod.from_aws(inst["Tags"]).get(name[4:])
    else:
        value = inst[{"instance-id": "InstanceId", "private-dns-name": "PrivateDnsName",
                      "private-ip-address": "PrivateIpAddress"}[name]]
    return value in f["Values"]


class Grid:
    """One provider's HostFactory dirs over a FakeEc2; verbs run in-process."""

    def __init__(self, root: Path, ec2: FakeEc2) -> None:
        self.ec2 = ec2
        conf = root / "conf"
        conf.mkdir()
        (conf / "awsprov_config.json").write_text(json.dumps({"AWS_REGION": "us-east-1"}))
        (conf / "awsprov_templates.json").write_text(json.dumps({"templates": [{
            "templateId": "RI", "providerApi": "RunInstances", "vmType": "m5.large",
            "maxNumber": -1, "imageId": "ami-0123456789abcdef0",
            "subnetId": "subnet-0123456789abcdef0",
            "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"],
                           "ncores": ["Numeric", "1"], "nram": ["Numeric", "8192"]}}]}))
        self.env = {"HF_PROVIDER_NAME": "scale", "HF_PROVIDER_CONFDIR": str(conf),
                    "HF_PROVIDER_WORKDIR": str(root / "work"),
                    "HF_PROVIDER_LOGDIR": str(root / "log")}

    def counted(self, verb: str, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        self.ec2.calls = {}
        code, answer = run([verb], io.StringIO(json.dumps(data)), self.env)
        assert code == 0, answer
        return answer, dict(self.ec2.calls)

    def request(self, machines: int) -> str:
        answer, _ = self.counted("requestMachines", {"template": {
            "templateId": "RI", "machineCount": machines}})
        return answer["requestId"]


@pytest.fixture
def grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Grid:
    ec2 = FakeEc2()

    def client(self: session.Aws, service: str) -> Any:
        assert service == "ec2", f"unexpected {service} client"
        return ec2

    monkeypatch.setattr(session.Aws, "client", client)
    return Grid(tmp_path, ec2)


def _hosts(answer: dict[str, Any]) -> list[dict[str, str]]:
    return [{"name": m["name"], "machineId": m["machineId"]}
            for r in answer["requests"] for m in r["machines"]]


@pytest.mark.parametrize("machines", [1, 100, 5000])
def test_calls_per_verb_grow_only_with_aws_page_sizes(grid: Grid, machines: int) -> None:
    pages = math.ceil(machines / PAGE)

    answer, launch = grid.counted("requestMachines", {"template": {
        "templateId": "RI", "machineCount": machines}})
    # batches of 100, as AWS advises: 50 calls at 5,000
    assert launch == {"RunInstances": {1: 1, 100: 1, 5000: 50}[machines]}
    rid = answer["requestId"]

    status, poll = grid.counted("getRequestStatus", {"requests": [{"requestId": rid}]})
    hosts = _hosts(status)
    assert len(hosts) == machines and status["requests"][0]["status"] == "complete"
    assert poll == {"DescribeInstances": pages}

    _, reclaim = grid.counted("getReturnRequests", {"machines": hosts})
    assert reclaim == {"DescribeInstances": pages}

    ret, give_back = grid.counted("requestReturnMachines", {"machines": hosts})
    # the tag sweep (1 per 1,000) where it beats ids (1 per 200): 5 calls at 5,000, not 25
    assert give_back == {"DescribeInstances": min(pages, math.ceil(machines / FILTER_VALUES)),
                         "CreateTags": pages, "TerminateInstances": pages}

    done, last = grid.counted("getRequestStatus", {"requests": [
        {"requestId": ret["requestId"]}]})
    assert done["requests"][0]["status"] == "complete"
    assert last == {"DescribeInstances": pages}


def test_many_open_requests_cost_what_their_machines_do(grid: Grid) -> None:
    ids = [grid.request(250) for _ in range(20)]  # 5,000 machines over 20 requests

    status, poll = grid.counted("getRequestStatus", {"requests": [{"requestId": r}
                                                                  for r in ids]})
    assert [len(r["machines"]) for r in status["requests"]] == [250] * 20
    assert poll == {"DescribeInstances": 5}  # as for one request of 5,000

    hosts = _hosts(status)
    _, give_back = grid.counted("requestReturnMachines", {"machines": hosts})
    assert give_back == {"DescribeInstances": 5, "CreateTags": 5, "TerminateInstances": 5}
