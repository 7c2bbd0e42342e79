"""The plugin log: one file per provider in the log dir, rotated as a call starts."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # importing typing costs every call ~6 ms: annotations only
if TYPE_CHECKING:
    from typing import Any

LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5


def rotate_log(path: str, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS) -> None:
    """Rotate like RotatingFileHandler (path -> path.1 ... path.N), once as a call starts.

    A call writes a few lines, so checking at start keeps the same bound; and
    logging.handlers (socket, pickle, queue) would cost ~10 ms, a tenth of a short call.
    Another call rotating at the same moment is harmless: a rename that fails is skipped.
    """
    try:
        if os.path.getsize(path) < max_bytes:
            return
    except OSError:
        return
    import contextlib

    for i in range(backups, 0, -1):
        src = f"{path}.{i - 1}" if i > 1 else path
        with contextlib.suppress(OSError):
            os.replace(src, f"{path}.{i}")


LOG_MODE = 0o640
MAX_MESSAGE = 4000  # characters of one log message; the rest is cut, with a count
# Control characters (newline included) in a message, written as escapes, so that text
# from an input (a request id holding a newline) can never start a line of its own.
_ESCAPES = {c: f"\\x{c:02x}" for c in range(32)} | {127: "\\x7f", 10: "\\n", 13: "\\r",
                                                     9: "\\t"}


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as one bounded line: control characters escaped, the excess cut."""
    if len(text) > limit:
        text = f"{text[:limit]}... [{len(text) - limit} more characters]"
    return text.translate(_ESCAPES)


def _formatter() -> Any:
    import logging

    class OneLine(logging.Formatter):
        """A record is one line; a traceback's lines follow indented, never mistaken for
        a record of their own."""

        def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802
            record.message = one_line(record.message)
            return super().formatMessage(record)

        def formatException(self, ei: Any) -> str:  # noqa: N802
            text = super().formatException(ei)
            return "\n".join("    | " + one_line(line) for line in text.splitlines())

    return OneLine("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")


def open_log(path: str) -> Any:
    """The log file for appending, created 0640, never through a symlink; None if it
    cannot be opened (the caller falls back to stderr: a verb answers without its log)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     LOG_MODE)
    except OSError:
        return None
    import stat

    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")


def setup_logging(ctx: Any, level: str = "INFO") -> None:
    import logging
    import sys

    from hostfactory_aws.context import DIR_FIX_VARIABLES, ensure_dir
    from hostfactory_aws.errors import ConfigError

    root = logging.getLogger()
    if any(getattr(h, "_hostfactory_aws", False) for h in root.handlers):
        return
    ensure_dir(ctx.work_dir, 0o700, "work")  # without it no verb can work: the error says why
    path = os.path.join(ctx.log_dir, f"{ctx.provider}-hostfactory-aws.log")
    stream = None
    try:
        ensure_dir(ctx.log_dir, 0o750, "log")
    except ConfigError as exc:  # no log dir: the verb still answers, logging to stderr
        problem = str(exc)
    else:
        rotate_log(path)
        stream = open_log(path)
        problem = (f"cannot append to {path}; make it a regular file writable by this user or "
                   f"set {DIR_FIX_VARIABLES['log']} to a writable directory")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._hostfactory_aws = True  # type: ignore[attr-defined]
    handler.setFormatter(_formatter())
    root.addHandler(handler)
    root.setLevel(level)
    if stream is None:
        logging.getLogger(__name__).warning(
            "%s (the log cannot be written; logging to standard error instead)", problem)
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)
