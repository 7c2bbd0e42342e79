"""Reading the admin's JSON files and checking them against our schemas.

Every message names the file, where in it, and the field; misspelt keys get a suggestion.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
from typing import Any

from .errors import ConfigError

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
