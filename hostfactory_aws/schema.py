"""Reading the admin's JSON files and checking them against our schemas.

Every message names the file, where in it, and the field; misspelt keys get a suggestion.
"""

from __future__ import annotations

import contextlib
import json
import os

from hostfactory_aws.errors import ConfigError

TYPE_CHECKING = False  # importing typing costs every call ~6 ms: annotations only
if TYPE_CHECKING:
    from typing import Any

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")


def load_json_file(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc


def load_schema(name: str) -> dict[str, Any]:
    with open(os.path.join(SCHEMA_DIR, name), encoding="utf-8") as fh:
        return json.load(fh)


def checked(data: Any, schema_name: str,
            cache_path: str | None = None) -> list[tuple[list[Any], str]]:
    """schema_errors against one of our schemas, skipped when this exact check passed before.

    Importing jsonschema costs more than the rest of a getAvailableTemplates call, and
    HostFactory calls the scripts every few seconds with files that rarely change. The key
    is a SHA-256 of the schema file and of the very document being checked, so any change to
    either is checked in full, exactly as strictly; only passes are remembered.
    """
    with open(os.path.join(SCHEMA_DIR, schema_name), "rb") as fh:
        schema_bytes = fh.read()
    key = ""
    if cache_path:
        doc = json.dumps(data, sort_keys=True, separators=(",", ":"))
        key = _sha256_hex(schema_bytes + b"\0" + doc.encode("utf-8"))
        if key in _passed(cache_path):
            return []
        failed = _failed(cache_path).get(key)
        if failed is not None:
            return [(list(p), m) for p, m in failed]
    errors = schema_errors(data, json.loads(schema_bytes))
    if key:
        _remember(cache_path, key, errors)  # type: ignore[arg-type]
    return errors


_PROPERTY_NAMES: dict[tuple[str, tuple[str, ...]], list[str]] = {}


def property_names(schema_name: str, where: tuple[str, ...] = ()) -> list[str]:
    """The keys a schema (or the object at ``where`` in it) knows, without jsonschema."""
    key = (schema_name, where)
    if key not in _PROPERTY_NAMES:
        node: Any = load_schema(schema_name)
        for step in where:
            node = node[step]
        _PROPERTY_NAMES[key] = sorted((node.get("properties") or {}).keys())
    return _PROPERTY_NAMES[key]


def unknown_keys(data: dict[str, Any], schema_name: str,
                 where: tuple[str, ...] = ()) -> list[str]:
    """``unknown field 'X' (did you mean 'Y'?)`` per key the schema does not know."""
    allowed = property_names(schema_name, where)
    extra = sorted(set(data) - set(allowed))
    return [_unknown_message(key, allowed) for key in extra]


def _unknown_message(key: str, allowed: list[str]) -> str:
    import difflib  # lazy: only an unknown key needs suggestions

    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if not close:  # IBM's keys differ in case from ours in places (vmtype, VmType)
        lower = {a.lower(): a for a in allowed}
        close = [lower[key.lower()]] if key.lower() in lower else []
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown field '{key}'{hint}"


def _sha256_hex(data: bytes) -> str:
    """SHA-256 from CPython's built-in module: hashlib would load OpenSSL (~4 ms) for it."""
    try:
        from _sha256 import sha256  # CPython <= 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # CPython >= 3.12
        except ImportError:
            from hashlib import sha256
    return sha256(data).hexdigest()


VALIDATED_KEEP = 16  # remembered passes: config and templates, a few edits back


def read_json_dict(cache_path: str) -> dict[str, Any]:
    """A small JSON cache file as a dict; a missing or damaged one reads as empty."""
    try:
        with open(cache_path, encoding="utf-8") as fh:
            doc = json.load(fh)
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(cache_path: str, doc: dict[str, Any]) -> None:
    """Best effort: a cache that cannot be written only means checking again next time."""
    from hostfactory_aws.errors import StateError
    from hostfactory_aws.state import write_json_atomic

    with contextlib.suppress(OSError, StateError):
        write_json_atomic(cache_path, doc)


def _passed(cache_path: str) -> list[str]:
    keys = read_json_dict(cache_path).get("sha256", [])
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


def _failed(cache_path: str) -> dict[str, list[Any]]:
    """Checks that failed, by key: a file left broken is not re-checked every poll."""
    failed = read_json_dict(cache_path).get("failed", {})
    return failed if isinstance(failed, dict) else {}


def _remember(cache_path: str, key: str, errors: list[tuple[list[Any], str]]) -> None:
    doc = read_json_dict(cache_path)
    keys = [k for k in _passed(cache_path) if k != key]
    failed = {k: v for k, v in _failed(cache_path).items() if k != key}
    if errors:
        failed[key] = [[p, m] for p, m in errors]
    else:
        keys.append(key)
    doc.update(sha256=keys[-VALIDATED_KEEP:], failed=dict(list(failed.items())[-VALIDATED_KEEP:]))
    _write_cache(cache_path, doc)


def first_time(cache_path: str | None, text: str) -> bool:
    """True the first time this text is asked about (then remembered): for log lines that
    should be written once per change of a file, not on every call."""
    if not cache_path:
        return True
    key = _sha256_hex(text.encode("utf-8"))
    doc = read_json_dict(cache_path)
    noted = doc.get("noted") if isinstance(doc.get("noted"), list) else []
    if key in noted:
        return False
    doc["noted"] = [*noted, key][-VALIDATED_KEEP:]
    _write_cache(cache_path, doc)
    return True


def schema_errors(data: Any, schema: dict[str, Any]) -> list[tuple[list[Any], str]]:
    """All schema violations as (path, readable message), most specific first."""
    import jsonschema  # lazy: only when a file has changed since it was last validated

    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        out.append((list(err.absolute_path), _readable(err, schema)))
    return out


def _readable(err: Any, schema: dict[str, Any]) -> str:
    if err.validator == "additionalProperties":
        import difflib  # lazy: only a failed check needs suggestions

        allowed = sorted((err.schema.get("properties") or {}).keys())
        extra = sorted(set(err.instance) - set(allowed))
        parts = []
        for key in extra:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            parts.append(f"unknown field '{key}'{hint}")
        return "; ".join(parts)
    if err.validator == "required":
        return err.message.replace("is a required property", "is required")
    if err.validator == "oneOf" and err.context:
        best = min(err.context, key=lambda e: len(list(e.relative_path)))
        return f"{err.instance!r} is not valid: {best.message}"
    if err.validator == "pattern":
        return f"{err.instance!r} does not match the expected form {err.validator_value}"
    return err.message


def coerce_numeric_strings(obj: dict[str, Any], int_keys: set[str],
                           float_keys: frozenset[str] = frozenset()) -> dict[str, Any]:
    """IBM's sample files write numbers as strings ("maxNumber": "10"); accept both."""
    out = dict(obj)
    for key in int_keys & out.keys():
        value = out[key]
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            out[key] = int(value.strip())
    for key in float_keys & out.keys():
        value = out[key]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                out[key] = float(value)
    return out
