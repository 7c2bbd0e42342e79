"""What HostFactory may have been told: the answer journal and the calls still at work.

The reaper may end a launch's hosts only when it can PROVE that HostFactory never got the
launch's request id. Process ids and record ages prove nothing (a restored state file, a
volume snapshot or the plugin's own ``.bak`` bring back records whose call answered long
ago). Two witnesses that a state file restore does not roll back do:

- the journal ``<state>.answers``: an append-only file whose first line names it (a random
  token, stored in every record written while it exists) and that gets the request id,
  fsynced, BEFORE the answer is printed. An id in it may have been answered; an id absent
  from the very journal its record names was never answered.
- a call lock ``<state>.calls/<request id>.lock`` that the call holds (flock) from before
  its record is written until it exits: the kernel drops it when the process dies, so a
  lock that can be taken means the call is over; a lock file that is missing proves nothing.

Anything less (journal missing, replaced or not the record's, lock file gone) is doubt, and
in doubt the hosts are kept and listed as orphan candidates.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from typing import Any

HEADER = "hostfactory-aws answers "
_held: dict[str, int] = {}  # request id -> fd of the call lock this process holds


def journal_path(state_path: str) -> str:
    return state_path + ".answers"


def locks_dir(state_path: str) -> str:
    return state_path + ".calls"


def _lock_path(state_path: str, rid: str) -> str:
    return os.path.join(locks_dir(state_path), f"{os.path.basename(rid)}.lock")


def token(state_path: str, create: bool = False) -> str | None:
    """The journal's name; with ``create``, a new journal is started if there is none."""
    path = journal_path(state_path)
    try:
        with open(path, "rb") as fh:
            first = fh.readline().decode("ascii", "replace")
    except FileNotFoundError:
        if not create:
            return None
        import uuid

        name = uuid.uuid4().hex
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            return token(state_path)
        try:
            os.write(fd, f"{HEADER}{name}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return name
    if not first.startswith(HEADER) or not first.endswith("\n"):
        return None
    return first[len(HEADER):].strip() or None


def mark(state_path: str, rid: str) -> None:
    """Write ``rid`` to the journal and make it durable; the answer is printed after this."""
    fd = os.open(journal_path(state_path), os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
    try:
        os.write(fd, f"{rid}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    release(state_path, rid)


def journaled(state_path: str) -> tuple[str | None, set[str]]:
    """(journal token, every request id it holds)."""
    try:
        with open(journal_path(state_path), "rb") as fh:
            lines = fh.read().decode("ascii", "replace").split("\n")
    except FileNotFoundError:
        return None, set()
    if not lines[0].startswith(HEADER):
        return None, set()
    return lines[0][len(HEADER):].strip() or None, {x for x in lines[1:] if x}


def hold(state_path: str, rid: str) -> None:
    """Take this call's lock for ``rid``; kept until the process exits (or ``release``)."""
    os.makedirs(locks_dir(state_path), mode=0o700, exist_ok=True)
    fd = os.open(_lock_path(state_path, rid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _held[rid] = fd


def release(state_path: str, rid: str) -> None:
    """The call is answered: its lock file is no longer evidence of anything."""
    with contextlib.suppress(OSError):
        os.unlink(_lock_path(state_path, rid))
    fd = _held.pop(rid, None)
    if fd is not None:
        os.close(fd)


def call_over(state_path: str, rid: str) -> bool | None:
    """True: the call that holds ``rid``'s lock is gone; False: it runs; None: no lock file."""
    try:
        fd = os.open(_lock_path(state_path, rid), os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    finally:
        os.close(fd)
    return True


def never_answered(rec: dict[str, Any], journal: tuple[str | None, set[str]],
                   over: bool | None, rid: str) -> bool:
    """The proof the reaper needs: this record's call is over and never printed its id."""
    name, ids = journal
    return (over is True and bool(rec.get("journal")) and rec.get("journal") == name
            and rid not in ids and not rec.get("answered"))
