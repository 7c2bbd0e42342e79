"""The provider config file (awsprov_config.json): IBM's key names, checked, with defaults."""

from __future__ import annotations

from typing import Any

from hostfactory_aws.errors import ConfigError
from hostfactory_aws.schema import checked, coerce_numeric_strings, load_json_file

DEFAULTS: dict[str, Any] = {
    "AWS_CONNECTION_TIMEOUT_MS": 10000,
    "AWS_READ_TIMEOUT_MS": 60000,
    "AWS_REQUEST_RETRY_ATTEMPTS": 4,
    "AWS_INSTANCE_PENDING_TIMEOUT_SEC": 180,
    "AWS_SPOT_TERMINATE_ON_RECLAIM": False,
    "AWS_ORPHAN_TIMEOUT_MINUTES": 0,  # 0: orphans are logged, never terminated
    "STATE_LOCK_TIMEOUT_SEC": 30,
    "REQUEST_RETENTION_HOURS": 24,
    "LogLevel": "INFO",
}
INT_KEYS = {k for k, v in DEFAULTS.items() if isinstance(v, int) and not isinstance(v, bool)}
INT_KEYS.add("AWS_PROXY_PORT")


def parse_config(raw: Any, path: str, cache: str | None = None) -> dict[str, Any]:
    """Check a loaded config document; return it with defaults filled in.

    ``cache``: the file remembering schema checks that passed (see validate.checked).
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a JSON object of KEY: value")
    data = coerce_numeric_strings(raw, INT_KEYS)
    flag = data.get("AWS_SPOT_TERMINATE_ON_RECLAIM")
    if isinstance(flag, str) and flag.lower() in ("true", "false"):
        data["AWS_SPOT_TERMINATE_ON_RECLAIM"] = flag.lower() == "true"
    errors = checked(data, "config.schema.json", cache)
    if errors:
        lines = [f"{path}: {_where(p)}{msg}" for p, msg in errors]
        raise ConfigError("; ".join(lines))
    out = {**DEFAULTS, **data}
    level = out["LogLevel"].upper()
    out["LogLevel"] = "WARNING" if level == "WARN" else level
    return out


def load_config(path: str, cache: str | None = None) -> dict[str, Any]:
    return parse_config(load_json_file(path), path, cache)


def _where(path: list[Any]) -> str:
    return f"{path[0]}: " if path else ""
