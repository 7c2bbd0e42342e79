"""Checks on what HostFactory (or anyone who can run the scripts) passes in: pure, no AWS.

Every refusal names the field, whatever the bytes. The limits, stated once:

- the input document: at most MAX_INPUT_BYTES (32 MiB) of UTF-8 JSON, no deeper than the
  JSON parser goes (about 1,000 levels), no NaN or Infinity;
- a list (requests, machines): at most MAX_ITEMS entries;
- machineCount: a whole number of at most MAX_COUNT_DIGITS digits (ASCII);
- ids: ``req-``/``ret-`` + a lower-case uuid, ``i-`` + 8 or 17 lower-case hex digits;
  host names at most MAX_NAME characters, no control characters.
Duplicated ids are merged, first occurrence first.
"""

from __future__ import annotations

import json
import re

from hostfactory_aws.errors import InputError

TYPE_CHECKING = False  # importing typing costs every call ~6 ms: annotations only
if TYPE_CHECKING:
    from typing import Any

MAX_INPUT_BYTES = 32 * 1024 * 1024  # 150,000 machines returned at once take ~10 MB
MAX_ITEMS = 200_000
MAX_COUNT_DIGITS = 7
MAX_NAME = 255
MAX_SHOWN = 40  # characters of a refused value quoted back

REQUEST_ID = re.compile(r"(req|ret)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
INSTANCE_ID = re.compile(r"i-[0-9a-f]{8}(?:[0-9a-f]{9})?")
_COUNT = re.compile(rf"[0-9]{{1,{MAX_COUNT_DIGITS}}}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shown(value: Any) -> str:
    """A refused value as quoted back: its repr, cut, with control characters escaped."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    text = repr(value)
    if len(text) > MAX_SHOWN:
        text = f"{text[:MAX_SHOWN]}... ({len(text)} characters)"
    return text.encode("ascii", "backslashreplace").decode("ascii")


def parse_document(raw: bytes, where: str) -> dict[str, Any]:
    """The input bytes -> a JSON object, or an InputError saying what is wrong with them."""
    if len(raw) > MAX_INPUT_BYTES:
        raise InputError(f"input from {where}: {len(raw)} bytes, more than the "
                         f"{MAX_INPUT_BYTES} allowed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"input from {where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} "
                         f"at offset {exc.start})") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except RecursionError:
        raise InputError(f"input from {where}: nested too deeply for a HostFactory "
                         "request") from None
    except ValueError as exc:
        raise InputError(f"input from {where} is not valid JSON: {one_line(str(exc))}"
                         ) from None
    if not isinstance(data, dict):
        raise InputError(f"input from {where} must be a JSON object")
    return data


class BigNumber(str):
    """An integer literal too long to be a count: kept as text for the field's refusal."""


def _bounded_int(text: str) -> Any:
    return int(text) if len(text.lstrip("-")) <= 18 else BigNumber(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def one_line(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)[:300]


def items(data: dict[str, Any], key: str, required: bool = True,
          single_ok: bool = False) -> list[Any]:
    """data[key] as a list, bounded; ``single_ok``: a lone object is a list of one (IBM's
    page shows getRequestStatus's ``requests`` so)."""
    value = data.get(key)
    if value is None and not required:
        return []
    if isinstance(value, dict) and single_ok:
        value = [value]
    if not isinstance(value, list) or (required and not value):
        raise InputError(f"{key}: {'required, ' if required else ''}a "
                         f"{'non-empty ' if required else ''}list")
    if len(value) > MAX_ITEMS:
        raise InputError(f"{key}: {len(value)} entries, more than the {MAX_ITEMS} allowed")
    return value


def count(value: Any, field: str) -> int:
    """A machine count: a whole number (or its ASCII digits as a string), at least 1."""
    if isinstance(value, str) and not isinstance(value, BigNumber) and _COUNT.fullmatch(
            value.strip()):
        value = int(value.strip())
    if isinstance(value, BigNumber) or (isinstance(value, int) and not isinstance(value, bool)
                                        and len(str(abs(value))) > MAX_COUNT_DIGITS):
        raise InputError(f"{field}: at most {MAX_COUNT_DIGITS} digits, got a "
                         f"{len(str(value).lstrip('-'))}-digit number")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{field}: must be a whole number, got {shown(value)}")
    if value < 1:
        raise InputError(f"{field}: must be at least 1, got {value}")
    return value


def request_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{field}: required, a non-empty string")
    if not REQUEST_ID.fullmatch(value):
        raise InputError(f"{field}: {shown(value)} is not a request id of this plugin "
                         "(req-<uuid> or ret-<uuid>)")
    return value


def machine_id(value: Any, field: str) -> str:
    """An EC2 instance id, or "" when absent."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not INSTANCE_ID.fullmatch(value):
        raise InputError(f"{field}: {shown(value)} is not an EC2 instance id (i-<hex>)")
    return value


def host_name(value: Any, field: str) -> str:
    """A host name, or "" when absent."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > MAX_NAME or _CONTROL.search(value):
        raise InputError(f"{field}: {shown(value)} is not a host name (a string of at most "
                         f"{MAX_NAME} characters, no control characters)")
    return value


def machines(data: dict[str, Any], required: bool = True) -> list[dict[str, str]]:
    """``machines``: [{"name", "machineId"}], each checked, duplicates merged.

    Entries naming the same machineId (or, without one, the same name) are one machine.
    """
    out: dict[str, dict[str, str]] = {}
    for i, m in enumerate(items(data, "machines", required)):
        if not isinstance(m, dict):
            raise InputError(f"machines[{i}]: must be an object with name and/or machineId")
        mid = machine_id(m.get("machineId"), f"machines[{i}].machineId")
        name = host_name(m.get("name"), f"machines[{i}].name")
        if not mid and not name:
            raise InputError(f"machines[{i}]: needs machineId or name")
        key = mid or f"name:{name}"
        if key in out:
            out[key]["name"] = out[key]["name"] or name
            continue
        out[key] = {"machineId": mid, "name": name}
    return list(out.values())
