"""Verb modules in-process (module.run(ctx, data)) against moto."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from hostfactory_aws import state
from hostfactory_aws.errors import AwsError, ConfigError, InputError
from hostfactory_aws.verbs import (
    get_available_templates,
    get_request_status,
    request_machines,
    request_return_machines,
)
from tests.support.faults import fail_on

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def raw(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def ask(ctx: Any, template_id: str, count: int) -> dict[str, Any]:
    return request_machines.run(ctx, {"template": {"templateId": template_id,
                                                   "machineCount": count}})


def status(ctx: Any, rid: str) -> dict[str, Any]:
    answer = get_request_status.run(ctx, {"requests": [{"requestId": rid}]})
    (one,) = answer["requests"]
    assert one["requestId"] == rid
    return one


# --- requestMachines ---------------------------------------------------------------------

def test_request_over_max_number_is_refused_and_changes_nothing(make_ctx: Any,
                                                                template: Any) -> None:
    ctx = make_ctx(template(maxNumber=3))
    with pytest.raises(InputError) as exc:
        ask(ctx, "OnDemand", 4)
    msg = str(exc.value)
    assert "template.machineCount" in msg and "3" in msg
    assert state.read(ctx.state_path)["requests"] == {}
    assert ctx.aws.calls["RunInstances"] == 0


def test_request_counts_what_is_held(make_ctx: Any, template: Any, described: Any) -> None:
    ctx = make_ctx(template(maxNumber=3))
    answer = ask(ctx, "OnDemand", 2)
    rid = answer["requestId"]
    assert rid.startswith("req-")
    rec = state.read(ctx.state_path)["requests"][rid]
    assert (rec["kind"], rec["templateId"], rec["units"], rec["launch"]) == (
        "create", "OnDemand", 2, "done")
    assert len(rec["instances"]) == 2
    assert set(described(list(rec["instances"]))) == set(rec["instances"])

    before = raw(ctx.state_path)
    with pytest.raises(InputError) as exc:
        ask(ctx, "OnDemand", 2)
    assert "more than the 1 template 'OnDemand' can still give" in str(exc.value)
    assert raw(ctx.state_path) == before
    assert ctx.aws.calls["RunInstances"] == 1


def test_unlimited_template_has_no_cap(make_ctx: Any, template: Any) -> None:
    ctx = make_ctx(template(maxNumber=-1))
    assert ask(ctx, "OnDemand", 3)["requestId"].startswith("req-")


def test_unknown_template_is_a_config_error(make_ctx: Any, template: Any) -> None:
    ctx = make_ctx(template())
    with pytest.raises(ConfigError, match="unknown template 'Nope'"):
        ask(ctx, "Nope", 1)


@pytest.mark.parametrize("data", [{}, {"template": {"templateId": "OnDemand"}},
                                  {"template": {"templateId": "OnDemand", "machineCount": 0}},
                                  {"template": {"machineCount": 1}}])
def test_bad_request_input(make_ctx: Any, template: Any, data: dict[str, Any]) -> None:
    ctx = make_ctx(template())
    with pytest.raises(InputError):
        request_machines.run(ctx, data)
    assert raw(ctx.state_path) is None
    assert ctx._aws is None  # refused before any AWS call


def test_failed_launch_leaves_the_state_as_it_was(make_ctx: Any, template: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(template(maxNumber=2))
    with monkeypatch.context() as refused:
        fail_on(refused, "RunInstances", "UnauthorizedOperation", "fatal", "not allowed")
        with pytest.raises(AwsError, match="UnauthorizedOperation"):
            ask(ctx, "OnDemand", 2)
        assert state.read(ctx.state_path)["requests"] == {}
    assert ask(ctx, "OnDemand", 2)["requestId"]  # the capacity was not kept reserved


def test_unknown_outcome_keeps_the_record(make_ctx: Any, template: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(template(maxNumber=2))
    fail_on(monkeypatch, "RunInstances", "ReadTimeoutError", "unknown", "read timed out")
    answer = ask(ctx, "OnDemand", 2)
    assert "outcome unknown" in answer["message"]
    rec = state.read(ctx.state_path)["requests"][answer["requestId"]]
    assert rec["launch"] == "unknown"
    assert rec["errors"] == ["ReadTimeoutError: read timed out"]


# --- the cycle, in-process ---------------------------------------------------------------

def test_request_status_return_cycle(make_ctx: Any, template: Any, ec2: Any) -> None:
    ctx = make_ctx(template(maxNumber=2))
    rid = ask(ctx, "OnDemand", 2)["requestId"]
    st = status(ctx, rid)
    assert st["status"] == "complete", st
    assert [m["result"] for m in st["machines"]] == ["succeed", "succeed"]
    for m in st["machines"]:
        assert m["name"].endswith(".ec2.internal") and m["privateIpAddress"]
        assert m["machineId"].startswith("i-") and isinstance(m["launchtime"], int)

    hosts = [{"name": m["name"], "machineId": m["machineId"]} for m in st["machines"]]
    ret = request_return_machines.run(ctx, {"machines": hosts[:1]})["requestId"]
    assert ret.startswith("ret-")
    for _ in range(3):  # moto moves shutting-down -> terminated on the next look
        rst = status(ctx, ret)
        if rst["status"] != "running":
            break
    assert rst["status"] == "complete", rst
    assert [m["result"] for m in rst["machines"]] == ["succeed"]
    left = ec2.describe_instances(InstanceIds=[hosts[1]["machineId"]])
    assert left["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"


def test_unknown_request_id_is_an_error_not_running(make_ctx: Any, template: Any) -> None:
    ctx = make_ctx(template())
    st = status(ctx, "req-00000000-0000-0000-0000-000000000000")
    assert st["status"] == "complete_with_error"
    assert "unknown" in st["message"]


# --- getAvailableTemplates ---------------------------------------------------------------

def _state_exists(ctx: Any) -> None:
    """Free of AWS when the state file exists; without one, a single sweep rebuilds it."""
    os.makedirs(ctx.work_dir, exist_ok=True)
    with open(ctx.state_path, "w", encoding="utf-8") as fh:
        fh.write('{"version": 1, "requests": {}}')


def test_templates_with_complete_attributes_make_no_aws_call(make_ctx: Any,
                                                             template: Any) -> None:
    ctx = make_ctx(template("A", maxNumber=5), template("B", maxNumber=-1))
    _state_exists(ctx)
    answer = get_available_templates.run(ctx, {})
    assert [t["templateId"] for t in answer["templates"]] == ["A", "B"]
    assert answer["templates"][0]["availableNumber"] == 5
    assert "availableNumber" not in answer["templates"][1]
    assert ctx._aws is None


def test_available_number_follows_requests(make_ctx: Any, template: Any) -> None:
    ctx = make_ctx(template(maxNumber=5))
    ask(ctx, "OnDemand", 2)
    (t,) = get_available_templates.run(ctx, {})["templates"]
    assert (t["maxNumber"], t["availableNumber"]) == (5, 3)


def test_missing_attributes_are_filled_once(make_ctx: Any, template: Any) -> None:
    tpl = template(vmType="c5.xlarge", attributes={"ncpus": ["Numeric", "2"]})
    ctx = make_ctx(tpl)
    (t,) = get_available_templates.run(ctx, {})["templates"]
    assert t["attributes"] == {"ncpus": ["Numeric", "2"], "type": ["String", "X86_64"],
                               "ncores": ["Numeric", "2"], "nram": ["Numeric", "8192"]}
    assert ctx.aws.calls["DescribeInstanceTypes"] == 1
    again = make_ctx(tpl)  # the next call, a new process: served from the cache
    assert get_available_templates.run(again, {})["templates"] == [t]
    assert again._aws is None


def test_get_available_templates_does_not_import_boto3(tmp_path: Any, env: dict[str, str],
                                                       make_ctx: Any, template: Any) -> None:
    _state_exists(make_ctx(template("A"), template("B", maxNumber=-1)))
    code = textwrap.dedent("""
        import io, json, sys
        from hostfactory_aws import invoke_provider
        class Stdin(io.StringIO):
            def isatty(self):
                return False
        env = json.loads(sys.argv[1])
        rc, answer = invoke_provider.run(["getAvailableTemplates"], Stdin("{}"), env)
        assert rc == 0, answer
        assert [t["templateId"] for t in answer["templates"]] == ["A", "B"], answer
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore"))
        assert not loaded, loaded
        print("ok")
    """)
    clean = {k: v for k, v in env.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(clean)], cwd=str(tmp_path),
                          env={**clean, "PYTHONPATH": ROOT}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
