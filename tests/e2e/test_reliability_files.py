"""Issue 11, cases 4, 8 and 10, through the scripts: the files under the plugin.

- lock files unlinked in a loop under 40 concurrent requests (case 4);
- a record of the wrong type, a state path that is a directory, a log that cannot be
  written (case 8): one bad record never becomes a crash loop;
- planted symlinks and file modes (case 10).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.test_reliability_faults import record_figures
from tests.support.hostfactory import PROVIDER_TAG, REQUEST_TAG, RI, ROOT, HostFactory, tags_of


def request_payload(count: int = 1) -> dict[str, Any]:
    return {"template": {"templateId": RI, "machineCount": count}}


def test_unlinked_lock_under_forty_concurrent_calls(
        hf: HostFactory, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Case 4: before, 62 of 90 requests launched and crashed with KeyError.

    40 scripts at once (16 requestMachines for 12 free slots, 24 getAvailableTemplates, the
    cheap reader of the same state) while lock files are unlinked in a loop.
    """
    templates = hf.default_templates()
    templates[0]["maxNumber"] = 12
    hf.write_templates(templates)
    hf.write_config(STATE_LOCK_TIMEOUT_SEC=120)  # 40 start-ups on 2 cores
    hf.ok("getAvailableTemplates")  # the work dir and state exist before the storm
    stop = threading.Event()
    unlinked = 0

    def cleaner() -> None:  # an admin or a tmp cleaner removing lock files, again and again
        nonlocal unlinked
        while not stop.is_set():
            # the state lock is an flock on the work dir (nothing to unlink), the calls'
            # locks are files: an unlinked one must make a launch a doubt, never reapable
            for p in glob.glob(str(hf.work_dir / "*.lock")) + glob.glob(
                    str(hf.work_dir / "*.calls" / "*.lock")):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)
                    unlinked += 1
            stop.wait(0.001)

    plan = [("requestMachines", request_payload())] * 16 + [("getAvailableTemplates", {})] * 24
    t = threading.Thread(target=cleaner)
    t.start()
    try:
        with ThreadPoolExecutor(max_workers=40) as pool:
            answers = list(pool.map(lambda vp: (vp[0], *hf.call(*vp)), plan))
    finally:
        stop.set()
        t.join()
    granted = [a["requestId"] for v, code, a in answers if v == "requestMachines" and code == 0]
    refused = [a["message"] for v, code, a in answers if v == "requestMachines" and code == 1]
    assert all("maxNumber 12" in m for m in refused), refused  # never an internal error
    assert unlinked > 0  # the storm did meet deleted lock files
    assert len(granted) == 12 and len(refused) == 4
    assert all(code == 0 for v, code, _ in answers if v == "getAvailableTemplates")
    state = hf.state()["requests"]
    assert set(state) == set(granted)  # every answered id has its record
    mine = {i: x for i, x in hf.server.instances().items()
            if tags_of(x).get(PROVIDER_TAG) == "awsinst"}
    by_request = {tags_of(x)[REQUEST_TAG] for x in mine.values()}
    assert len(mine) == 12 and by_request == set(granted)  # none lost, none doubled
    assert "KeyError" not in hf.log_text() and "internal error" not in hf.log_text()
    assert hf.logged_calls() == hf.made
    record_figures(tmp_path_factory, "unlinked_lock_40_calls", {
        "concurrent_calls": 40, "lock_files_unlinked": unlinked, "machines_lost": 0,
        "duplicates": len(mine) - 12, "orphans_left": 0})


def test_bad_record_is_set_aside_and_shown_by_doctor(hf: HostFactory) -> None:
    """Case 8: a state file that parses but holds one record of the wrong type."""
    rid = hf.request(RI, 1)
    held = hf.wait(rid)["machines"]
    other = hf.request(RI, 1)
    doc = hf.state()
    doc["requests"][other]["instances"] = ["not", "an", "object"]
    hf.state_path.write_text(json.dumps(doc))
    for _ in range(2):  # every verb answers, again and again
        assert hf.templates()[RI]["availableNumber"] >= 8
        assert hf.status(rid)[0]["machines"] == held
    again = hf.status(other)[0]  # rebuilt from its instances' tags
    assert again["status"] == "complete" and len(again["machines"]) == 1
    kept = json.loads((hf.work_dir / f"{hf.state_path.name}.quarantine.json").read_text())
    assert kept[other]["problem"] == "instances is not an object"
    assert "set aside" in hf.log_text()
    doctor = subprocess.run([sys.executable, "-m", "hostfactory_aws", "doctor", "--json"],
                            capture_output=True, text=True, cwd=hf.cwd,
                            env={**hf.env, "PYTHONPATH": str(ROOT)}, timeout=60)
    line = {c["check"]: c for c in json.loads(doctor.stdout)["checks"]}["state file"]
    assert line["status"] == "FAIL" and other in line["detail"], line
    assert "quarantine.json" in line["fix"]


def test_state_path_that_is_a_directory_names_it(hf: HostFactory) -> None:
    hf.work_dir.mkdir(exist_ok=True)
    hf.state_path.mkdir()
    code, answer = hf.call("requestMachines", request_payload())
    assert code == 1
    assert str(hf.state_path) in answer["message"] and "\n" not in answer["message"]
    assert "directory" in answer["message"]
    assert hf.server.instances() == {}


def test_unwritable_log_falls_back_to_stderr_and_the_verb_answers(
        hf: HostFactory, tmp_path: Any) -> None:
    hf.log_dir.mkdir(exist_ok=True)
    log = hf.log_dir / "awsinst-hostfactory-aws.log"
    log.mkdir()  # no file can be opened there (as root too)
    rid = hf.request(RI, 1)
    assert hf.wait(rid)["status"] == "complete"


def test_planted_symlinks_never_make_the_plugin_write_elsewhere(hf: HostFactory,
                                                               tmp_path: Any) -> None:
    """Case 10: a temp name, the backup's temp name and the log, all links to a victim."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    hf.work_dir.mkdir()
    hf.log_dir.mkdir()
    for pid in range(os.getpid(), os.getpid() + 200):  # the next scripts' likely pids
        for name in (f"{hf.state_path}.tmp-{pid}", f"{hf.state_path}.bak.tmp-{pid}"):
            os.symlink(victim, name)
    os.symlink(victim, hf.log_dir / "awsinst-hostfactory-aws.log")
    os.symlink(victim, f"{hf.state_path}.lock")
    rid = hf.request(RI, 1)
    assert hf.wait(rid)["status"] == "complete"
    hf.give_back(hf.status(rid)[0]["machines"])
    assert victim.read_text() == "precious\n"
    assert not hf.state_path.is_symlink() and rid in hf.state()["requests"]


def test_created_dirs_and_files_are_private(hf: HostFactory) -> None:
    hf.wait(hf.request(RI, 1))

    def mode(p: Any) -> int:
        return stat.S_IMODE(os.stat(p).st_mode)

    assert mode(hf.work_dir) & 0o077 == 0  # 0700
    assert mode(hf.log_dir) & 0o027 == 0  # 0750 at most
    assert mode(hf.state_path) & 0o077 == 0
    logs = list(hf.log_dir.glob("*.log"))
    assert logs and all(mode(p) & 0o037 == 0 for p in logs)  # 0640 at most
