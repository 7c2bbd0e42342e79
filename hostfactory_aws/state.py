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
from typing import Any, Iterator

from hostfactory_aws.errors import StateError

log = logging.getLogger(__name__)
VERSION = 1


def empty() -> dict[str, Any]:
    return {"version": VERSION, "requests": {}}


@contextlib.contextmanager
def _lock(path: str, exclusive: bool, timeout: float) -> Iterator[None]:
    lock_path = path + ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise StateError(
                        f"state file {path} is locked by another call for more than "
                        f"{timeout:g}s (STATE_LOCK_TIMEOUT_SEC); retry, or check for a hung "
                        f"process holding {lock_path}") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def _read_unlocked(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict) or not isinstance(data.get("requests"), dict):
            raise ValueError("not a state document")
        return data
    except FileNotFoundError:
        return empty()
    except (ValueError, UnicodeDecodeError) as exc:
        return _recover(path, exc)


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


def _write_unlocked(path: str, data: dict[str, Any]) -> None:
    directory = os.path.dirname(path) or "."
    text = json.dumps(data, separators=(",", ":"), sort_keys=True)
    if os.path.exists(path):
        _atomic_write(path + ".bak", _read_bytes(path), directory)
    _atomic_write(path, text.encode("utf-8"), directory)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def write_json_atomic(path: str, data: Any) -> None:
    """For small side files (caches) that need no lock: readers see old or new, never half."""
    _atomic_write(path, json.dumps(data, sort_keys=True).encode("utf-8"),
                  os.path.dirname(path) or ".")


def _atomic_write(path: str, payload: bytes, directory: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StateError(f"cannot write state file {path}: {exc.strerror}; check free space "
                         f"and permissions of {directory}") from exc


def read(path: str, timeout: float = 30) -> dict[str, Any]:
    """A consistent snapshot of the state, for calls that only look."""
    with _lock(path, exclusive=False, timeout=timeout):
        return _read_unlocked(path)


@contextlib.contextmanager
def update(path: str, timeout: float = 30) -> Iterator[dict[str, Any]]:
    """Re-read under the exclusive lock, let the caller change it, write it back if changed.

    An exception inside the block leaves the file as it was.
    """
    with _lock(path, exclusive=True, timeout=timeout):
        data = _read_unlocked(path)
        before = json.dumps(data, sort_keys=True)
        yield data
        if json.dumps(data, sort_keys=True) != before:
            _write_unlocked(path, data)


def prune(data: dict[str, Any], now: float, retention_hours: float) -> list[str]:
    """Drop requests that ended longer ago than the retention period; returns their ids."""
    cutoff = now - retention_hours * 3600
    gone = [rid for rid, rec in data["requests"].items()
            if rec.get("endedAt") is not None and rec["endedAt"] < cutoff]
    for rid in gone:
        del data["requests"][rid]
    return gone
