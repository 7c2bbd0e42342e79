"""state.py: atomic writes with a backup, recovery from a bad file, the lock, pruning."""

from __future__ import annotations

import contextlib
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
fd = os.open(sys.argv[1], os.O_RDONLY)
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


R0, R1, R2, R3 = (f"req-0000000{i}-0000-4000-8000-000000000000" for i in range(4))


def put(p: str, rid: str, **rec: Any) -> None:
    """A record that passes state.record_problem, with the given fields on top."""
    with state.update(p, timeout=5) as st:
        st["requests"][rid] = {"kind": "create", "createdAt": 1.0, **rec}


@pytest.fixture
def hold_lock(path: str) -> Iterator[Any]:
    """Start a separate process holding the state's lock file; released at teardown."""
    procs: list[subprocess.Popen[str]] = []

    def start(mode: str = "ex") -> None:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, state.lock_target(path), mode],
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
    put(path, R1, units=2)
    assert load(path)["requests"] == {R1: {"kind": "create", "createdAt": 1.0, "units": 2}}
    assert state.read(path)["requests"][R1]["units"] == 2
    assert not os.path.exists(path + ".bak")  # nothing to back up on the first write


def test_update_keeps_previous_version_as_bak(path: str) -> None:
    put(path, R1, n=1)
    put(path, R2, n=2)
    assert set(load(path)["requests"]) == {R1, R2}
    assert set(load(path + ".bak")["requests"]) == {R1}


def test_update_leaves_no_temp_files(path: str) -> None:
    put(path, R1, n=1)
    put(path, R2, n=2)
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(os.path.dirname(path),
                                                                       "*")))
    assert names == ["aws-state.json", "aws-state.json.bak"]


def test_unchanged_update_does_not_write(path: str) -> None:
    put(path, R1, n=1)
    with state.update(path) as st:
        assert st["requests"][R1]["n"] == 1
    assert not os.path.exists(path + ".bak")


def test_exception_inside_update_leaves_file_unchanged(path: str) -> None:
    put(path, R1, n=1)
    put(path, R2, n=2)
    before = raw(path)
    bak_before = raw(path + ".bak")
    with pytest.raises(RuntimeError, match="boom"), state.update(path) as st:
        st["requests"][R3] = {"n": 3}
        del st["requests"][R1]
        raise RuntimeError("boom")
    assert raw(path) == before
    assert raw(path + ".bak") == bak_before


@pytest.mark.parametrize("garbage", ['{"version": 1, "requests": {', "[1, 2]",
                                     '{"version": 1}', "\xff\xfe"])
def test_corrupt_file_moved_aside_and_restored_from_bak(path: str, garbage: str) -> None:
    put(path, R1, n=1)
    put(path, R2, n=2)  # .bak now holds req-1 only
    with open(path, "w", encoding="latin-1") as fh:
        fh.write(garbage)
    assert set(state.read(path)["requests"]) == {R1}
    aside = glob.glob(path + ".corrupt-*")
    assert len(aside) == 1
    assert raw(aside[0], "latin-1") == garbage
    # the restored state stays restored: the next call must not start from empty
    assert set(state.read(path)["requests"]) == {R1}
    with state.update(path) as st:
        assert set(st["requests"]) == {R1}
        st["requests"][R3] = {"n": 3}
    assert set(load(path)["requests"]) == {R1, R3}


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
    put(path, R1, n=1)
    before = raw(path)
    hold_lock("ex")
    with pytest.raises(StateError) as exc, state.update(path, timeout=0.2) as st:
        st["requests"][R2] = {}
    msg = str(exc.value)
    assert path in msg
    assert "STATE_LOCK_TIMEOUT_SEC" in msg
    assert raw(path) == before
    with pytest.raises(StateError):
        state.read(path, timeout=0.2)  # readers wait for writers too


def test_readers_share_the_lock(path: str, hold_lock: Any) -> None:
    put(path, R1, n=1)
    hold_lock("sh")
    assert set(state.read(path, timeout=0.5)["requests"]) == {R1}
    with pytest.raises(StateError), state.update(path, timeout=0.2):
        pass


def test_write_failure_is_a_state_error(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state.os, "urandom", lambda n: b"\xf1\xed" * (n // 2))
    os.mkdir(f"{path}.tmp-{os.getpid()}-f1edf1ed")  # the temp file cannot be made, even as root
    with pytest.raises(StateError, match="cannot write state file") as exc, \
            state.update(path) as st:
        st["requests"][R1] = {}
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


# --- issue 11: locks that survive an unlinked file, no symlink followed, bad records --------

COUNTER = """
import sys
sys.path.insert(0, sys.argv[3])
from hostfactory_aws import state
for _ in range(int(sys.argv[2])):
    with state.update(sys.argv[1], timeout=60) as st:
        rec = st["requests"].setdefault("req-00000000-0000-4000-8000-000000000000",
                                        {"kind": "create", "createdAt": 1.0, "units": 0})
        rec["units"] += 1
"""


def test_unlinking_lock_files_in_a_loop_loses_no_update(path: str) -> None:
    """Processes increment one counter while every lock file in sight is unlinked as fast
    as a loop can: every increment is kept (lost updates lost machines in issue 11)."""
    import threading

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    stop = threading.Event()

    def cleaner() -> None:
        while not stop.is_set():
            for p in glob.glob(os.path.join(os.path.dirname(path), "*.lock")):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)

    t = threading.Thread(target=cleaner)
    t.start()
    try:
        procs = [subprocess.Popen([sys.executable, "-c", COUNTER, path, "25", root])
                 for _ in range(8)]
        assert [p.wait(timeout=120) for p in procs] == [0] * 8
    finally:
        stop.set()
        t.join()
    assert state.read(path)["requests"][R0]["units"] == 8 * 25


@pytest.fixture
def no_directory_flock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system (NFS) refusing flock on a directory: the lock file is the fallback."""
    import errno
    import fcntl
    import stat

    real = fcntl.flock

    def flock(fd: int, mode: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EBADF, "no flock on a directory here")
        real(fd, mode)

    monkeypatch.setattr(state.fcntl, "flock", flock)


@pytest.mark.usefixtures("no_directory_flock")
def test_fallback_lock_file_unlinked_while_held_refuses_the_stale_write(path: str) -> None:
    put(path, R1, n=1)
    with pytest.raises(StateError, match="removed while this call held it"), \
            state.update(path, timeout=1) as first:
        os.unlink(path + ".lock")  # a tmp cleaner, while the first call holds it
        put(path, R2, n=2)  # a second call takes a new lock file and writes
        first["requests"][R3] = {"kind": "create", "createdAt": 3.0}
    assert set(load(path)["requests"]) == {R1, R2}  # the second call's update survives


@pytest.mark.usefixtures("no_directory_flock")
def test_fallback_lock_file_is_never_followed_as_a_link(path: str, tmp_path: Any) -> None:
    os.symlink(tmp_path / "elsewhere", path + ".lock")
    with pytest.raises(StateError, match="not a link"):
        state.read(path)
    assert not (tmp_path / "elsewhere").exists()


def test_lock_timeout_does_not_invite_deleting_files(path: str, hold_lock: Any) -> None:
    hold_lock()
    with pytest.raises(StateError) as exc, state.update(path, timeout=0.2):
        pass
    assert "Deleting files does not release" in str(exc.value)
    assert "STATE_LOCK_TIMEOUT_SEC" in str(exc.value)


def test_planted_symlinks_are_never_written_through(path: str, tmp_path: Any) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    for name in (f"{path}.tmp-{os.getpid()}", f"{path}.lock", f"{path}.bak.tmp-{os.getpid()}"):
        os.symlink(victim, name)
    put(path, R1, n=1)
    put(path, R2, n=2)
    assert victim.read_text() == "precious"
    assert set(load(path)["requests"]) == {R1, R2}
    assert not os.path.islink(path)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_state_path_that_is_a_directory_is_one_clear_line(path: str) -> None:
    os.mkdir(path)
    with pytest.raises(StateError) as exc:
        state.read(path)
    assert str(exc.value).startswith(f"state file {path}: Is a directory")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("bad", [
    {"kind": "create", "createdAt": "yesterday"},
    {"kind": "create", "createdAt": 1.0, "instances": []},
    {"kind": "create", "createdAt": 1.0, "instances": {"i-1": {"units": "2"}}},
    {"kind": "return", "createdAt": 1.0},  # a return under a req- id
    "not a record",
    None,
])
def test_bad_record_is_set_aside_not_a_crash_loop(path: str, bad: Any) -> None:
    put(path, R1, n=1)
    doc = load(path)
    doc["requests"][R2] = bad
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    assert set(state.read(path)["requests"]) == {R1}  # a reader skips it
    with state.update(path) as st:  # a writer moves it to the quarantine file
        assert set(st["requests"]) == {R1}
    assert set(load(path)["requests"]) == {R1}
    kept = state.quarantined(path)
    assert kept[R2]["record"] == bad and kept[R2]["problem"]
    with state.update(path) as st:  # and it is gone for good: no repeated work
        st["requests"][R3] = {"kind": "create", "createdAt": 2.0}
    assert set(load(path)["requests"]) == {R1, R3}


def test_record_under_a_forged_id_is_set_aside(path: str) -> None:
    put(path, R1, n=1)
    doc = load(path)
    doc["requests"]["req-1\nFORGED LINE"] = {"kind": "create", "createdAt": 1.0}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    assert set(state.read(path)["requests"]) == {R1}
