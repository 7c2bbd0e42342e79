"""Issue 11, case 9: hostile input, through the scripts. Every refusal is exit 1 with one
JSON document naming the field (never "internal error"), changes nothing in AWS or in the
state, and nothing in the input can forge or flood a log line."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any, Iterator

import pytest

from hostfactory_aws import inputs
from tests.support.hostfactory import CHANGING_ACTIONS, RI, SCRIPTS, HostFactory, check_output

UUID = "00000000-0000-4000-8000-000000000000"
FORGED = "2026-01-01 00:00:00,000 1 INFO hostfactory_aws: FORGED LINE"


@pytest.fixture(scope="module")
def env(moto_server: Any, tmp_path_factory: pytest.TempPathFactory) -> HostFactory:
    moto_server.reset()
    hf = HostFactory(tmp_path_factory.mktemp("hostile"), moto_server)
    hf.wait(hf.request(RI, 1))
    return hf


@pytest.fixture
def nothing_done(env: HostFactory) -> Iterator[HostFactory]:
    before = env.state_bytes()
    env.server.reset_calls()
    yield env
    calls = env.server.calls()
    assert not {a: n for a, n in calls.items() if a in CHANGING_ACTIONS}, calls
    assert env.state_bytes() == before


def run_bytes(env: HostFactory, verb: str, raw: bytes) -> tuple[int, dict[str, Any]]:
    path = env.inputs / f"raw-{len(raw)}"
    path.write_bytes(raw)
    proc = subprocess.run([str(SCRIPTS / f"{verb}.sh"), "-f", str(path)], capture_output=True,
                          text=True, cwd=env.cwd, env=env.env, timeout=120,
                          stdin=subprocess.DEVNULL)
    return check_output(verb, proc.returncode, proc.stdout, proc.stderr)


def ask(count: Any) -> bytes:
    return json.dumps({"template": {"templateId": RI, "machineCount": count}}).encode()


CORPUS: dict[str, tuple[str, bytes, list[str]]] = {
    "machineCount superscript two": ("requestMachines", ask("²"), ["machineCount"]),
    "machineCount 5,000 digits": ("requestMachines",
                                  b'{"template": {"templateId": "OnDemand-RI", '
                                  b'"machineCount": ' + b"9" * 5000 + b"}}",
                                  ["machineCount", "digits"]),
    "machineCount 5,000 digit string": ("requestMachines", ask("9" * 5000), ["machineCount"]),
    "machineCount 1e3": ("requestMachines", ask(1e3), ["machineCount"]),
    "machineCount NaN": ("requestMachines",
                         b'{"template": {"templateId": "OnDemand-RI", "machineCount": NaN}}',
                         ["JSON", "NaN"]),
    "machineCount object": ("requestMachines", ask({"n": 1}), ["machineCount"]),
    "deep nesting": ("requestMachines", b'{"template": ' + b"[" * 100_000 + b"]" * 100_000
                     + b"}", ["nested too deeply"]),
    "binary": ("requestMachines", bytes(range(256)) * 4, ["not UTF-8", "offset 128"]),
    "invalid UTF-8 in a string": ("getRequestStatus",
                                  b'{"requests": [{"requestId": "req-\xc3\x28"}]}',
                                  ["not UTF-8"]),
    "too large": ("getReturnRequests", b" " * (inputs.MAX_INPUT_BYTES + 1), ["bytes"]),
    "templateId object": ("requestMachines",
                          b'{"template": {"templateId": {"a": 1}, "machineCount": 1}}',
                          ["template.templateId"]),
    "requestId object": ("getRequestStatus", b'{"requests": [{"requestId": {"a": 1}}]}',
                         ["requests[0].requestId"]),
    "requestId list": ("getRequestStatus", b'{"requests": [{"requestId": ["req-1"]}]}',
                       ["requests[0].requestId"]),
    "requestId not ours": ("getRequestStatus", b'{"requests": [{"requestId": "../../etc"}]}',
                           ["requests[0].requestId", "req-<uuid>"]),
    "machineId object": ("requestReturnMachines",
                         b'{"machines": [{"name": "h", "machineId": {"a": 1}}]}',
                         ["machines[0].machineId"]),
    "machineId with a filter": ("requestReturnMachines",
                                b'{"machines": [{"machineId": "i-1*"}]}',
                                ["machines[0].machineId"]),
    "machine name list": ("getReturnRequests",
                          b'{"machines": [{"name": ["h"], "machineId": "i-0123456789abcdef0"}]}',
                          ["machines[0].name"]),
    "machine name with newline": ("requestReturnMachines",
                                  json.dumps({"machines": [{"name": "h\n" + FORGED}]}).encode(),
                                  ["machines[0].name"]),
    "requestId forging a log line": ("getRequestStatus", json.dumps(
        {"requests": [{"requestId": f"req-{UUID}\n{FORGED}"}]}).encode(),
        ["requests[0].requestId"]),
    "machines not a list": ("getReturnRequests", b'{"machines": "i-0123456789abcdef0"}',
                            ["machines"]),
}


@pytest.mark.parametrize("case", CORPUS)
def test_hostile_input_is_refused_naming_the_field(nothing_done: HostFactory,
                                                    case: str) -> None:
    verb, raw, words = CORPUS[case]
    code, answer = run_bytes(nothing_done, verb, raw)
    assert code == 1, answer
    assert set(answer) == {"message"}
    assert "internal error" not in answer["message"], answer
    for word in words:
        assert word in answer["message"], (word, answer["message"])
    assert len(answer["message"]) < 1000
    assert "\n" not in answer["message"]


def test_no_log_line_forged_or_flooded(env: HostFactory) -> None:
    """After the corpus (and a return of 20,000 unknown ids, whose refusals made a 1 MB line
    before: 150,000 made 8 MB), every log line is a record of its own, and bounded."""
    many = {"machines": [{"machineId": f"i-{i:017x}"} for i in range(20_000)]}
    code, answer = run_bytes(env, "requestReturnMachines", json.dumps(many).encode())
    assert code == 0 and "not returned" in answer["message"], answer["message"][:200]
    text = env.log_text()
    record = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ [A-Z]+ |    \| ")
    lines = text.splitlines()
    for line in lines:
        assert record.match(line), line[:200]
        assert len(line) < 5_000, len(line)
    assert any("more characters]" in line for line in lines)  # the long one, cut
    assert not any(line.startswith("2026-01-01") for line in lines)  # nothing forged


def test_duplicated_machines_are_returned_once(env: HostFactory) -> None:
    rid = env.request(RI, 1)
    machine = env.wait(rid)["machines"][0]
    entry = {"name": machine["name"], "machineId": machine["machineId"]}
    env.server.reset_calls()
    ret = env.ok("requestReturnMachines", {"machines": [entry, entry, dict(entry)]})
    assert env.server.calls().get("TerminateInstances") == 1
    done = env.status(ret["requestId"])[0]
    assert [m["machineId"] for m in done["machines"]] == [machine["machineId"]]
    dup = env.ok("getRequestStatus", {"requests": [{"requestId": rid}] * 3})
    assert [a["requestId"] for a in dup["requests"]] == [rid]  # merged: answered once
