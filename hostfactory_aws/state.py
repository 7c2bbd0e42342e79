"""The flat JSON state file: an index that makes calls cheap, never the only record.

Writes are atomic (temp file, fsync, rename) under an exclusive flock on a sidecar lock
file, with the previous version kept as ``.bak``. Readers take a shared lock, so they
never see a half-written file. A file that does not parse is moved aside for the admin and
the backup (or an empty state) takes its place, so a bad file never becomes a crash loop.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time

from hostfactory_aws.errors import StateError
from hostfactory_aws.inputs import REQUEST_ID

TYPE_CHECKING = False  # importing typing costs every call ~6 ms: annotations only
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)
VERSION = 1
ASIDE = "_setAside"  # in-memory only: records that failed their check, on their way out


def empty() -> dict[str, Any]:
    return {"version": VERSION, "requests": {}}


# flock on a directory is refused by some network file systems: the lock file is used there.
_NO_DIR_LOCK = (errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)


def lock_target(path: str) -> str:
    """What the state's lock is taken on: the directory holding the state file.

    Not a ``.lock`` file beside it: a tmp cleaner or an admin may unlink such a file while a
    call holds it, and the next call would lock a new file and run beside the holder (lost
    updates, launches without a record). A directory holding files cannot be unlinked.
    Every provider sharing a work dir is thereby serialised; calls take milliseconds.
    """
    return os.path.dirname(os.path.abspath(path))


@contextlib.contextmanager
def _lock(path: str, exclusive: bool,
          timeout: float) -> Iterator[Callable[[str, Any], bool] | None]:
    """Hold the state's lock; yields None, or with the fallback lock file a check
    ``unchanged(path, identity read)`` that no other writer replaced the file meanwhile."""
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + timeout
    directory = lock_target(path)
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise StateError(f"work directory {directory}: {exc.strerror}") from None
    still_held: Callable[[str, Any], bool] | None = None  # None: nobody else can write
    try:
        _flock(fd, mode, deadline, path, timeout)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in _NO_DIR_LOCK:
            raise
        fd = _lock_file(path + ".lock", mode, deadline, path, timeout)
        # Another holder may exist if the file was unlinked: write only over what was read.
        still_held = lambda p, seen: _identity(p) == seen  # noqa: E731
    except BaseException:
        os.close(fd)
        raise
    try:
        yield still_held
    finally:
        os.close(fd)


def _same_file(fd: int, lock_path: str) -> bool:
    try:
        st = os.stat(lock_path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev)


def _lock_file(lock_path: str, mode: int, deadline: float, path: str, timeout: float) -> int:
    """Fallback: flock on ``<state>.lock``, kept only if the file locked is still the one at
    the path (else it was unlinked meanwhile, and the file now there is locked instead)."""
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
        except OSError as exc:
            raise StateError(f"cannot open lock file {lock_path}: {exc.strerror} (it must be "
                             "a regular file, not a link)") from None
        try:
            _flock(fd, mode, deadline, path, timeout)
            if _same_file(fd, lock_path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _flock(fd: int, mode: int, deadline: float, path: str, timeout: float) -> None:
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            raise StateError(
                f"state file {path} is locked by another call for more than {timeout:g}s "
                "(STATE_LOCK_TIMEOUT_SEC); retry later. Deleting files does not release "
                "it: a hung process of this plugin holds it (ps -ef | grep invoke_provider)"
            ) from None
        time.sleep(0.02)


def _read_unlocked(path: str) -> dict[str, Any]:
    """The state as on disk, less records that fail their check (see quarantine())."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict) or not isinstance(data.get("requests"), dict):
            raise ValueError("not a state document")
    except FileNotFoundError:
        return empty()
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        data = _recover(path, exc)
    except OSError as exc:
        raise StateError(f"state file {path}: {exc.strerror}; it must be a readable regular "
                         "file (move whatever is there aside)") from None
    _set_aside(path, data)
    return data


def record_problem(rid: Any, rec: Any) -> str | None:
    """Why a record cannot be used as is (wrong type, missing field), or None.

    Checks what the verbs compute with; a record failing it would crash every call.
    """
    if not isinstance(rid, str) or not REQUEST_ID.fullmatch(rid):
        return "request id is not req-/ret-<uuid>"
    if not isinstance(rec, dict):
        return f"record is a {type(rec).__name__}, not an object"
    kind = rec.get("kind")
    if kind not in ("create", "return") or kind != ("create" if rid[:3] == "req" else "return"):
        return f"kind {kind!r} does not fit the id"
    for key in ("createdAt", "endedAt", "units", "target"):
        value = rec.get(key)
        if value is not None and (isinstance(value, bool) or
                                  not isinstance(value, (int, float))):
            return f"{key} is {type(value).__name__}, not a number"
    if not isinstance(rec.get("createdAt"), (int, float)):
        return "createdAt missing"
    for key in ("fleetIds", "errors"):
        if key in rec and not isinstance(rec[key], list):
            return f"{key} is not a list"
    items = rec.get("instances" if kind == "create" else "machines", {})
    if not isinstance(items, dict):
        return f"{'instances' if kind == 'create' else 'machines'} is not an object"
    for iid, info in items.items():
        if not isinstance(info, dict):
            return f"{iid} is not an object"
        units = info.get("units", 1)
        if isinstance(units, bool) or not isinstance(units, (int, float)):
            return f"{iid}.units is not a number"
        for key in ("state", "returnId", "name", "requestId"):
            if info.get(key) is not None and not isinstance(info[key], str):
                return f"{iid}.{key} is not a string"
    return None


def _set_aside(path: str, data: dict[str, Any]) -> None:
    """Move records that fail record_problem() out of ``data`` into data[ASIDE] (in memory).

    One bad record must not make every call fail: it is logged, kept in
    ``<state>.quarantine.json`` by the next write, and shown by ``doctor``; the request,
    if real, is rebuilt from the instances' tags like any unknown id.
    """
    bad = {}
    for rid, rec in list(data["requests"].items()):
        why = record_problem(rid, rec)
        if why:
            bad[str(rid)] = {"record": data["requests"].pop(rid), "problem": why}
            log.error("state file %s: record %s set aside: %s (kept in %s)", path,
                      str(rid)[:80], why, quarantine_path(path))
    if bad:
        data[ASIDE] = bad


def quarantine_path(path: str) -> str:
    return path + ".quarantine.json"


def quarantined(path: str) -> dict[str, Any]:
    """Records set aside so far, by id: {"record", "problem", "at"} (for doctor)."""
    try:
        with open(quarantine_path(path), encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _keep_aside(path: str, data: dict[str, Any]) -> bool:
    """Save records set aside to the quarantine file; True if there were any."""
    bad = data.pop(ASIDE, None)
    if not bad:
        return False
    kept = quarantined(path)
    for rid, entry in bad.items():
        kept[rid] = {**entry, "at": time.time()}
    write_json_atomic(quarantine_path(path), kept)
    return True


def _recover(path: str, exc: Exception) -> dict[str, Any]:
    aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    with contextlib.suppress(OSError):
        os.replace(path, aside)
    log.error("state file %s is unreadable (%s); kept as %s", path, exc, aside)
    try:
        with open(path + ".bak", encoding="utf-8") as fh:
            data = json.load(fh)
        if isinstance(data, dict) and isinstance(data.get("requests"), dict):
            log.warning("state restored from %s.bak; AWS tags fill in anything newer", path)
            # Put it in the file's place: else the next call finds no file and starts empty.
            with contextlib.suppress(StateError):
                _atomic_write(path, json.dumps(data, separators=(",", ":"), sort_keys=True)
                              .encode("utf-8"), os.path.dirname(path) or ".")
            return data
    except (OSError, ValueError):
        pass
    log.warning("starting from an empty state; requests are answered from AWS tags")
    return empty()


def _write_unlocked(path: str, data: dict[str, Any],
                   unchanged: Callable[[], bool] | None = None) -> None:
    """Write ``data`` (the previous file kept as .bak); ``unchanged`` is asked just before
    the rename and vetoes the write if another writer got there first."""
    directory = os.path.dirname(path) or "."
    text = json.dumps(data, separators=(",", ":"), sort_keys=True)
    if os.path.exists(path):
        _atomic_write(path + ".bak", _read_bytes(path), directory)
    _atomic_write(path, text.encode("utf-8"), directory, unchanged)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def write_json_atomic(path: str, data: Any) -> None:
    """For small side files (caches) that need no lock: readers see old or new, never half."""
    _atomic_write(path, json.dumps(data, sort_keys=True).encode("utf-8"),
                  os.path.dirname(path) or ".")


def _atomic_write(path: str, payload: bytes, directory: str,
                  unchanged: Callable[[], bool] | None = None) -> None:
    tmp = f"{path}.tmp-{os.getpid()}-{os.urandom(4).hex()}"  # unpredictable, like secrets
    created = False
    try:
        # A new file or nothing: a planted symlink or file at this name is never written
        # through (O_EXCL fails on any existing name, O_NOFOLLOW on a link).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        created = True
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        if unchanged is not None and not unchanged():
            raise _Overtaken(errno.EEXIST, "changed by another call meanwhile")
        os.replace(tmp, path)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise StateError(f"cannot write state file {path}: {exc.strerror}; check free space "
                         f"and permissions of {directory}") from exc


def read(path: str, timeout: float = 30) -> dict[str, Any]:
    """A consistent snapshot of the state, for calls that only look."""
    with _lock(path, exclusive=False, timeout=timeout):
        data = _read_unlocked(path)
    data.pop(ASIDE, None)  # the next update keeps them; a reader only skips them
    return data


@contextlib.contextmanager
def update(path: str, timeout: float = 30) -> Iterator[dict[str, Any]]:
    """Re-read under the exclusive lock, let the caller change it, write it back if changed.

    An exception inside the block leaves the file as it was.
    """
    with _lock(path, exclusive=True, timeout=timeout) as unchanged:
        data = _read_unlocked(path)
        seen = _identity(path) if unchanged else None
        aside = data.pop(ASIDE, None)
        before = json.dumps(data, sort_keys=True)
        yield data
        changed = json.dumps(data, sort_keys=True) != before
        if not (changed or aside):
            return
        if aside:
            data[ASIDE] = aside
            _keep_aside(path, data)
        check = (lambda: unchanged(path, seen)) if unchanged else None
        try:
            _write_unlocked(path, data, check)
        except StateError as exc:
            if not isinstance(exc.__cause__, _Overtaken):
                raise
            # The fallback lock file was unlinked while held, and another call wrote
            # meanwhile: writing now would lose its update.
            raise StateError(f"lock file {path}.lock was removed while this call held it and "
                             "the state changed meanwhile; nothing written, retry (never "
                             "delete the lock file)") from None


class _Overtaken(OSError):
    """Another writer replaced the state file since this call read it."""


def _identity(path: str) -> bytes | None:
    """The state file's exact content (inode numbers and mtimes are reused too soon)."""
    try:
        return _read_bytes(path)
    except OSError:
        return None


def prune(data: dict[str, Any], now: float, retention_hours: float) -> list[str]:
    """Drop requests that ended longer ago than the retention period; returns their ids."""
    cutoff = now - retention_hours * 3600
    gone = [rid for rid, rec in data["requests"].items()
            if rec.get("endedAt") is not None and rec["endedAt"] < cutoff]
    for rid in gone:
        del data["requests"][rid]
    return gone
