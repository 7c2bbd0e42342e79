"""The verb's deadline: every call answers well inside HostFactory's action timeout.

HostFactory kills a script after its action timeout (240 s by default) and takes the call
as failed. ``VERB_DEADLINE_SEC`` (default 120) is this call's budget, counted from the
start of the process; AWS timeouts and retries are cut to fit in it (cloud/session.py), and
work that does not fit is left for the next call.
"""

from __future__ import annotations

import time

_start: float | None = None
# Slack kept for what follows the last AWS call: state write, log line, the answer.
ANSWER_SLACK_SEC = 2.0


def begin() -> None:
    """Start the clock: the entrypoint calls this as a call starts."""
    global _start
    _start = time.monotonic()


def claim() -> float:
    """When this call's clock started: the entrypoint's begin(), else now (an admin command
    or a test making its own AWS access). Each begin() is claimed once."""
    global _start
    started = _start if _start is not None else time.monotonic()
    _start = None
    return started


def remaining(total_sec: float, started: float) -> float:
    """Seconds left of a ``total_sec`` budget, less the slack kept for answering."""
    return total_sec - (time.monotonic() - started) - ANSWER_SLACK_SEC


def client_timeouts(cfg: dict, left: float) -> dict:
    """botocore Config keyword arguments (timeouts, retries) fitted into ``left`` seconds.

    One attempt (connect + read) may take at most half of what is left, so a call started
    with time to spare always ends in time; retries are granted only while a whole attempt
    still fits (see fits()).
    """
    per_attempt = max(1.0, left / 2)
    connect = min(cfg["AWS_CONNECTION_TIMEOUT_MS"] / 1000.0, max(0.5, per_attempt / 4))
    read = min(cfg["AWS_READ_TIMEOUT_MS"] / 1000.0, max(0.5, per_attempt - connect))
    return {"connect_timeout": connect, "read_timeout": read,
            "retries": {"mode": "standard",
                        "total_max_attempts": cfg["AWS_REQUEST_RETRY_ATTEMPTS"] + 1}}


# Below this many seconds left, no client is cut anew: an attempt would get under half of
# it, too little for AWS to answer a real call.
REFIT_MIN_LEFT_SEC = 6.0


def worth_refitting(left: float) -> bool:
    """Is enough left to give a new client timeouts of its own (see client_timeouts)?"""
    return left >= REFIT_MIN_LEFT_SEC


def fits(timeouts: dict, left: float, backoff: float = 0.0) -> bool:
    """Can one more attempt (after ``backoff`` seconds) end before the deadline?"""
    return left >= backoff + timeouts["connect_timeout"] + timeouts["read_timeout"]
