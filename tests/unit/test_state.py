"""state.py: atomic writes with a backup, recovery from a bad file, the lock, pruning."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from typing import Any, Iterator

import pytest

from hostfactory_aws import state
from hostfactory_aws.errors import StateError

# Holds an flock on argv[1] (shared if argv[2] == "sh") until its stdin closes.
HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_SH if sys.argv[2] == "sh" else fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def path(tmp_path: Any) -> str:
    return str(tmp_path / "aws-state.json")


def load(p: str) -> Any:
    with open(p, encoding="utf-8") as fh:
        return json.load(fh)


def raw(p: str, encoding: str | None = None) -> Any:
    """The file's exact content (bytes, or text in the given encoding)."""
    with open(p, "rb") as fh:
        data = fh.read()
    return data.decode(encoding) if encoding else data


def put(p: str, rid: str, **rec: Any) -> None:
    with state.update(p, timeout=5) as st:
        st["requests"][rid] = rec


@pytest.fixture
def hold_lock(path: str) -> Iterator[Any]:
    """Start a separate process holding the state's lock file; released at teardown."""
    procs: list[subprocess.Popen[str]] = []

    def start(mode: str = "ex") -> None:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, path + ".lock", mode],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"

    yield start
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


def test_read_of_missing_file_is_empty(path: str) -> None:
    assert state.read(path) == {"version": state.VERSION, "requests": {}}
    assert not os.path.exists(path)


def test_update_writes_and_read_sees_it(path: str) -> None:
    put(path, "req-1", kind="create", units=2)
    assert load(path)["requests"] == {"req-1": {"kind": "create", "units": 2}}
    assert state.read(path)["requests"]["req-1"]["units"] == 2
    assert not os.path.exists(path + ".bak")  # nothing to back up on the first write


def test_update_keeps_previous_version_as_bak(path: str) -> None:
    put(path, "req-1", n=1)
    put(path, "req-2", n=2)
    assert set(load(path)["requests"]) == {"req-1", "req-2"}
    assert set(load(path + ".bak")["requests"]) == {"req-1"}


def test_update_leaves_no_temp_files(path: str) -> None:
    put(path, "req-1", n=1)
    put(path, "req-2", n=2)
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(os.path.dirname(path),
                                                                       "*")))
    assert names == ["aws-state.json", "aws-state.json.bak", "aws-state.json.lock"]


def test_unchanged_update_does_not_write(path: str) -> None:
    put(path, "req-1", n=1)
    with state.update(path) as st:
        assert st["requests"]["req-1"] == {"n": 1}
    assert not os.path.exists(path + ".bak")


def test_exception_inside_update_leaves_file_unchanged(path: str) -> None:
    put(path, "req-1", n=1)
    put(path, "req-2", n=2)
    before = raw(path)
    bak_before = raw(path + ".bak")
    with pytest.raises(RuntimeError, match="boom"), state.update(path) as st:
        st["requests"]["req-3"] = {"n": 3}
        del st["requests"]["req-1"]
        raise RuntimeError("boom")
    assert raw(path) == before
    assert raw(path + ".bak") == bak_before


@pytest.mark.parametrize("garbage", ['{"version": 1, "requests": {', "[1, 2]",
                                     '{"version": 1}', "\xff\xfe"])
def test_corrupt_file_moved_aside_and_restored_from_bak(path: str, garbage: str) -> None:
    put(path, "req-1", n=1)
    put(path, "req-2", n=2)  # .bak now holds req-1 only
    with open(path, "w", encoding="latin-1") as fh:
        fh.write(garbage)
    assert set(state.read(path)["requests"]) == {"req-1"}
    aside = glob.glob(path + ".corrupt-*")
    assert len(aside) == 1
    assert raw(aside[0], "latin-1") == garbage
    # the restored state stays restored: the next call must not start from empty
    assert set(state.read(path)["requests"]) == {"req-1"}
    with state.update(path) as st:
        assert set(st["requests"]) == {"req-1"}
        st["requests"]["req-3"] = {"n": 3}
    assert set(load(path)["requests"]) == {"req-1", "req-3"}


def test_corrupt_file_without_bak_is_empty(path: str) -> None:
    with open(path, "w") as fh:
        fh.write("not json")
    assert state.read(path) == state.empty()
    assert len(glob.glob(path + ".corrupt-*")) == 1


def test_corrupt_file_and_corrupt_bak_is_empty(path: str) -> None:
    for p in (path, path + ".bak"):
        with open(p, "w") as fh:
            fh.write("{")
    assert state.read(path) == state.empty()


def test_lock_timeout_names_file_and_setting(path: str, hold_lock: Any) -> None:
    put(path, "req-1", n=1)
    before = raw(path)
    hold_lock("ex")
    with pytest.raises(StateError) as exc, state.update(path, timeout=0.2) as st:
        st["requests"]["req-2"] = {}
    msg = str(exc.value)
    assert path in msg
    assert "STATE_LOCK_TIMEOUT_SEC" in msg
    assert raw(path) == before
    with pytest.raises(StateError):
        state.read(path, timeout=0.2)  # readers wait for writers too


def test_readers_share_the_lock(path: str, hold_lock: Any) -> None:
    put(path, "req-1", n=1)
    hold_lock("sh")
    assert set(state.read(path, timeout=0.5)["requests"]) == {"req-1"}
    with pytest.raises(StateError), state.update(path, timeout=0.2):
        pass


def test_write_failure_is_a_state_error(path: str) -> None:
    os.mkdir(f"{path}.tmp-{os.getpid()}")  # the temp file cannot be made: works even as root
    with pytest.raises(StateError, match="cannot write state file") as exc, \
            state.update(path) as st:
        st["requests"]["req-1"] = {}
    assert path in str(exc.value)
    assert not os.path.exists(path)


def test_write_json_atomic(tmp_path: Any) -> None:
    p = str(tmp_path / "cache.json")
    state.write_json_atomic(p, {"m5.large": {"ncpus": 2}})
    state.write_json_atomic(p, {"m5.large": {"ncpus": 4}})
    assert load(p) == {"m5.large": {"ncpus": 4}}
    assert os.listdir(tmp_path) == ["cache.json"]


def test_prune_drops_only_old_ended_requests() -> None:
    now = 100 * 3600.0
    data = {"version": 1, "requests": {
        "old-ended": {"endedAt": now - 25 * 3600},
        "recent-ended": {"endedAt": now - 23 * 3600},
        "old-running": {"createdAt": now - 90 * 3600, "endedAt": None},
        "no-end-field": {"createdAt": 0},
    }}
    assert state.prune(data, now, 24) == ["old-ended"]
    assert set(data["requests"]) == {"recent-ended", "old-running", "no-end-field"}


def test_prune_with_zero_retention_drops_every_ended_request() -> None:
    data = {"version": 1, "requests": {"a": {"endedAt": 99.0}, "b": {"endedAt": None}}}
    assert state.prune(data, 100.0, 0) == ["a"]
    assert list(data["requests"]) == ["b"]
