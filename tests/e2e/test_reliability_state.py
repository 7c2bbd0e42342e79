"""Issue 4, the state file: lost, emptied or garbled between calls, and locked too long.

The state file is an index, never the only record: whatever happens to it, the answers for
requests HostFactory already holds must not change, and a corrupt file is kept for the admin.
A lock that cannot be had in STATE_LOCK_TIMEOUT_SEC fails the call before any AWS change.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from hostfactory_aws import state
from tests.e2e.test_reliability_faults import record_figures, state_of, tagged
from tests.support.hostfactory import RI, HostFactory

GARBAGE = b'{"version": 1, "requests": {"req-\x00\xff trailing garbage'


def summary(answers: list[dict[str, Any]]) -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """What HostFactory acts on: each request's status and its machines' id/result/status."""
    return [(a["requestId"], a["status"],
             sorted((m["machineId"], m["result"], m["status"]) for m in a["machines"]))
            for a in answers]


def corrupt_files(hf: HostFactory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in hf.work_dir.glob(hf.state_path.name + ".corrupt-*")}


def test_lost_or_corrupt_state_file_changes_no_answer(
        hf: HostFactory, tmp_path_factory: pytest.TempPathFactory) -> None:
    rid = hf.request(RI, 2)
    machines = hf.wait(rid)["machines"]
    ret = hf.give_back(machines[:1])
    baseline = summary(hf.status(rid, ret))
    assert baseline[1][1] == "complete", baseline  # the return is done
    running = [(m[0], m[2]) for m in baseline[0][2]]
    assert sorted(s for _, s in running) == ["running", "terminated"], baseline

    bak = hf.state_path.with_name(hf.state_path.name + ".bak")
    modes = {
        "garbage": lambda: hf.state_path.write_bytes(GARBAGE),
        "empty": lambda: hf.state_path.write_bytes(b""),
        "deleted": hf.state_path.unlink,
        # the backup garbled too: the answers come from the instances' tags alone
        "garbage_and_backup": lambda: (hf.state_path.write_bytes(GARBAGE),
                                       bak.write_bytes(b"[1, 2")),
    }
    kept_aside = 0
    for mode, damage in modes.items():
        before = corrupt_files(hf)
        damage()
        assert summary(hf.status(rid, ret)) == baseline, mode
        state = hf.state()  # a parseable file again, that knows both requests
        assert {rid, ret} <= set(state["requests"]), (mode, state)
        new = {k: v for k, v in corrupt_files(hf).items() if k not in before}
        if mode == "deleted":
            assert new == {}, mode
        else:  # the damaged file is kept for the admin, byte for byte
            assert list(new.values()) == [GARBAGE if "garbage" in mode else b""], (mode, new)
            kept_aside += 1
    assert "is unreadable" in hf.log_text()

    # and the machines are still there to give back: HostFactory goes on as if nothing was
    keep = [m for m in machines if m["machineId"] != machines[0]["machineId"]]
    ret2 = hf.give_back(keep)
    assert summary(hf.status(ret2))[0][1] == "complete"
    assert all(state_of(i) == "terminated" for i in tagged(hf, rid).values())
    record_figures(tmp_path_factory, "state_file_damage", {
        "damages": len(modes), "corrupt_files_kept": kept_aside, "machines_lost": 0,
        "duplicates": 0})


def test_lock_held_too_long_fails_before_touching_aws(
        hf: HostFactory, tmp_path_factory: pytest.TempPathFactory) -> None:
    hf.write_config(STATE_LOCK_TIMEOUT_SEC=1)
    rid = hf.request(RI, 1)
    held = hf.wait(rid)["machines"]
    lock_path = state.lock_target(str(hf.state_path))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDONLY)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('held', flush=True)\ntime.sleep(120)\n", lock_path],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = hf.state_bytes()
        hf.server.reset_calls()
        code, answer = hf.call("requestMachines",
                               {"template": {"templateId": RI, "machineCount": 1}})
        assert code == 1, answer
        code2, answer2 = hf.call("requestReturnMachines", {"machines": [
            {"name": held[0]["name"], "machineId": held[0]["machineId"]}]})
        assert code2 == 1, answer2
        calls = hf.server.calls()
    finally:
        holder.kill()
        holder.wait()
    for msg in (answer["message"], answer2["message"]):
        assert str(hf.state_path) in msg and "STATE_LOCK_TIMEOUT_SEC" in msg, msg
    assert calls == {}, calls  # not one AWS call, let alone a launch or termination
    assert hf.state_bytes() == before
    now = hf.server.instances()
    assert list(now) == [held[0]["machineId"]] and state_of(now[held[0]["machineId"]]) == (
        "running")

    # the holder gone, the same calls go through
    again = hf.request(RI, 1)
    assert len(tagged(hf, again)) == 1
    record_figures(tmp_path_factory, "lock_timeout", {
        "calls_refused": 2, "aws_calls_while_locked": sum(calls.values()),
        "machines_lost": 0, "duplicates": 0})
