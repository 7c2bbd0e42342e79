"""inputs.py: every refusal names the field, whatever the value; limits; duplicates."""

from __future__ import annotations

from typing import Any

import pytest

from hostfactory_aws import inputs
from hostfactory_aws.errors import InputError

RID = "req-00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize("value, count", [(3, 3), ("12", 12), (" 7 ", 7), (9_999_999, 9_999_999)])
def test_count_accepts(value: Any, count: int) -> None:
    assert inputs.count(value, "f") == count


@pytest.mark.parametrize("value", ["²", "٣", "1e3", 1.5, True, None, {"a": 1}, [1], 0, -1,
                                   "9" * 5000, 10 ** 7, inputs.BigNumber("9" * 5000)])
def test_count_refusals_name_the_field(value: Any) -> None:
    with pytest.raises(InputError) as exc:
        inputs.count(value, "template.machineCount")
    assert str(exc.value).startswith("template.machineCount: ")
    assert len(str(exc.value)) < 200


def test_document_limits_and_encoding() -> None:
    assert inputs.parse_document(b"", "x") == {}
    with pytest.raises(InputError, match="not UTF-8 text .byte 0xff at offset 0"):
        inputs.parse_document(b"\xff{}", "x")
    with pytest.raises(InputError, match="nested too deeply"):
        inputs.parse_document(b"[" * 50_000 + b"]" * 50_000, "x")
    with pytest.raises(InputError, match="not valid JSON"):
        inputs.parse_document(b'{"a": Infinity}', "x")
    big = inputs.parse_document(b'{"n": ' + b"1" * 100 + b"}", "x")
    assert isinstance(big["n"], inputs.BigNumber)


@pytest.mark.parametrize("value", [{"a": 1}, ["x"], 7, "req-1", f"{RID}\nforged",
                                   RID.upper(), "ret-" + RID[4:] + "0"])
def test_request_id_pattern(value: Any) -> None:
    with pytest.raises(InputError) as exc:
        inputs.request_id(value, "requests[0].requestId")
    assert str(exc.value).startswith("requests[0].requestId: ")
    assert "\n" not in str(exc.value)


def test_machines_checked_and_merged() -> None:
    iid = "i-0123456789abcdef0"
    got = inputs.machines({"machines": [{"machineId": iid}, {"name": "h1", "machineId": iid},
                                        {"name": "h2"}, {"name": "h2"}]})
    assert got == [{"machineId": iid, "name": "h1"}, {"machineId": "", "name": "h2"}]
    for bad, field in [({"machineId": "i-xyz"}, "machines[0].machineId"),
                       ({"machineId": ["i-0123456789abcdef0"]}, "machines[0].machineId"),
                       ({"name": "a\x00b"}, "machines[0].name"), ({}, "machines[0]"),
                       ("i-0123456789abcdef0", "machines[0]")]:
        with pytest.raises(InputError, match=rf"^{field.replace('[', '.').replace(']', '.')}"):
            inputs.machines({"machines": [bad]})
    with pytest.raises(InputError, match="more than the 200000 allowed"):
        inputs.machines({"machines": [{"name": "h"}] * (inputs.MAX_ITEMS + 1)})
