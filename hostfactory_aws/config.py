"""The provider config file (awsprov_config.json): IBM's key names, checked, with defaults.

Every key IBM documents for Symphony's AWS provider and LSF's aws/awsv2 plugins is accepted
with IBM's meaning (docs/ibm-keys.md). An unknown or misspelt key never stops a verb: it is
logged with a did-you-mean on every load and reported by ``validate`` and ``doctor``. Only
what makes a call unsafe (no region, a value of the wrong kind) is an error.
"""

from __future__ import annotations

import logging

from hostfactory_aws.errors import ConfigError
from hostfactory_aws.schema import (
    checked,
    coerce_numeric_strings,
    first_time,
    load_json_file,
    unknown_keys,
)

TYPE_CHECKING = False  # importing typing costs every call ~6 ms: annotations only
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "AWS_CONNECTION_TIMEOUT_MS": 10000,
    "AWS_READ_TIMEOUT_MS": 60000,
    "AWS_REQUEST_RETRY_ATTEMPTS": 4,
    # Each call's budget, well under HostFactory's 240 s action timeout (see deadline.py).
    "VERB_DEADLINE_SEC": 120,
    "AWS_INSTANCE_PENDING_TIMEOUT_SEC": 180,
    "AWS_SPOT_TERMINATE_ON_RECLAIM": False,
    "AWS_ORPHAN_TIMEOUT_MINUTES": 0,  # 0: orphans are logged, never terminated
    "AWS_TAG_InstanceID": False,
    "AWS_CREDENTIAL_RENEW_MARGIN": 1770,  # IBM's default: renew 29.5 min after issue
    "AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS": 0,
    "AWS_DESCRIBE_REQUEST_INTERVAL": 0,
    "ACCEPT_PROPAGATED_LOG_SETTING": False,
    "STATE_LOCK_TIMEOUT_SEC": 30,
    "REQUEST_RETENTION_HOURS": 24,
    "LogLevel": "INFO",
}
BOOL_KEYS = {"AWS_SPOT_TERMINATE_ON_RECLAIM", "AWS_TAG_InstanceID",
             "ACCEPT_PROPAGATED_LOG_SETTING"}
INT_KEYS = {k for k, v in DEFAULTS.items() if isinstance(v, int) and not isinstance(v, bool)}
INT_KEYS |= {"AWS_PROXY_PORT", "INSTANCE_CREATION_TIMEOUT"}
# IBM's files write "" for "not set" (AWS_PROXY_HOST: "", AWS_CREDENTIAL_SCRIPT: "").
EMPTY_MEANS_UNSET = {"AWS_PROXY_HOST", "AWS_PROXY_PORT", "AWS_ENDPOINT_URL", "AWS_KEY_FILE",
                     "AWS_CREDENTIAL_FILE", "AWS_CREDENTIAL_SCRIPT", "AWS_PROFILE",
                     "AWS_CREDENTIAL_RENEW_MARGIN", "INSTANCE_CREATION_TIMEOUT"}
# log4j's levels (IBM's LogLevel) -> Python's.
LOG_LEVELS = {"ALL": "DEBUG", "TRACE": "DEBUG", "DEBUG": "DEBUG", "INFO": "INFO",
              "WARN": "WARNING", "WARNING": "WARNING", "ERROR": "ERROR", "FATAL": "CRITICAL",
              "CRITICAL": "CRITICAL", "OFF": "CRITICAL"}
# Keys IBM documents that have nothing to act on here, and why (also in docs/ibm-keys.md).
NO_EFFECT: dict[str, str] = {}


def parse_config(raw: Any, path: str, cache: str | None = None,
                 env: dict[str, str] | None = None) -> dict[str, Any]:
    """Check a loaded config document; return it with defaults filled in.

    ``cache``: the file remembering schema checks (see schema.checked). ``env``: the
    environment, for ACCEPT_PROPAGATED_LOG_SETTING (HostFactory's HF_LOGLEVEL).
    The result carries ``_unknown``: one message per unknown key, with a did-you-mean.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a JSON object of KEY: value")
    data = {k: v for k, v in raw.items()
            if not (k in EMPTY_MEANS_UNSET and isinstance(v, str) and not v.strip())}
    data = coerce_numeric_strings(data, INT_KEYS)
    for key in BOOL_KEYS & data.keys():
        flag = data[key]
        if isinstance(flag, str) and flag.strip().lower() in ("true", "false"):
            data[key] = flag.strip().lower() == "true"
    url = data.get("AWS_ENDPOINT_URL")
    if isinstance(url, str) and "://" not in url:
        data["AWS_ENDPOINT_URL"] = "https://" + url.strip()  # IBM: "with or without protocol"
    if isinstance(data.get("LogLevel"), str):
        data["LogLevel"] = data["LogLevel"].strip().upper()
    errors = checked(data, "config.schema.json", cache)
    unknown = [f"{path}: {msg}" for msg in unknown_keys(data, "config.schema.json")]
    if errors:
        lines = [f"{path}: {_where(p)}{msg}" for p, msg in errors]
        raise ConfigError("; ".join(lines + unknown))
    out = {**DEFAULTS, **data}
    if out["ACCEPT_PROPAGATED_LOG_SETTING"] and (env or {}).get("HF_LOGLEVEL"):
        level = env["HF_LOGLEVEL"].strip().upper()  # type: ignore[index]
        out["LogLevel"] = level.removeprefix("LOG_") if level.startswith("LOG_") else level
    out["LogLevel"] = LOG_LEVELS.get(out["LogLevel"], "INFO")
    if "AWS_ORPHAN_TIMEOUT_MINUTES" not in data and data.get("INSTANCE_CREATION_TIMEOUT"):
        # IBM's rule: an instance not known to a request after this many minutes is gone
        # for good; this plugin's own key for it is AWS_ORPHAN_TIMEOUT_MINUTES.
        out["AWS_ORPHAN_TIMEOUT_MINUTES"] = data["INSTANCE_CREATION_TIMEOUT"]
    out["_unknown"] = unknown
    return out


def load_config(path: str, cache: str | None = None,
                env: dict[str, str] | None = None) -> dict[str, Any]:
    """Read, check and log: unknown keys are warned about on every load, never fatal."""
    import os

    cfg = parse_config(load_json_file(path), path, cache, os.environ if env is None else env)
    for msg in cfg["_unknown"]:
        log.warning("%s (ignored; hostfactory-aws validate lists every such key)", msg)
    notes = [f"{path}: {key}: accepted, no effect here: {NO_EFFECT[key]}"
             for key in sorted(NO_EFFECT.keys() & cfg.keys())]
    if notes and first_time(cache, "\n".join(notes)):  # once per change of the file
        for note in notes:
            log.info("%s (docs/ibm-keys.md)", note)
    return cfg


def problems(cfg: dict[str, Any]) -> list[str]:
    """What validate and doctor report about a config that loads: its unknown keys."""
    return list(cfg.get("_unknown", []))


def _where(path: list[Any]) -> str:
    return f"{path[0]}: " if path else ""
