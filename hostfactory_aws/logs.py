"""The plugin log: one file per provider in the log dir, rotated as a call starts."""

from __future__ import annotations

import os
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


def setup_logging(ctx: Any, level: str = "INFO") -> None:
    import logging

    from hostfactory_aws.context import ensure_dirs

    ensure_dirs(ctx)
    root = logging.getLogger()
    if any(getattr(h, "_hostfactory_aws", False) for h in root.handlers):
        return
    path = os.path.join(ctx.log_dir, f"{ctx.provider}-hostfactory-aws.log")
    rotate_log(path)
    try:
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:  # one line naming the file and the fix, not a traceback
        from hostfactory_aws.errors import ConfigError

        raise ConfigError(f"cannot write the log file {path}: {exc.strerror}; make it "
                          "writable by this user or set HF_PROVIDER_LOGDIR (LSF: "
                          "PRO_LSF_LOGDIR) to a writable directory") from exc
    handler._hostfactory_aws = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)
