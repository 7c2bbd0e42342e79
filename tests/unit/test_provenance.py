"""What ties an instance's launch to a request of this provider (pure part)."""

from __future__ import annotations

from typing import Any

import pytest

from hostfactory_aws.cloud import provenance

RID = "req-0b8e3c84-2d53-4d8e-9a52-6a7c1d9a1f00"


def inst(token: str | None = None, **tags: str) -> dict[str, Any]:
    tags = {"hostfactory:requestId": RID, **tags}
    return {"ClientToken": token, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


@pytest.mark.parametrize("token", [f"{RID}-0", f"{RID}-49", RID])
def test_run_instances_token_of_the_request_proves_it(token: str) -> None:
    assert provenance.mark(inst(token)) == "token"


@pytest.mark.parametrize("token", [None, "", "ABCDE", "req-other-0", RID[:-1], f"x{RID}-0",
                                   f"{RID}0"])
def test_any_other_token_proves_nothing(token: str | None) -> None:
    assert provenance.mark(inst(token)) is None


def test_group_named_for_the_request_proves_it() -> None:
    assert provenance.mark(inst(**{"aws:autoscaling:groupName": f"hf-{RID}"})) == "group"
    assert provenance.mark(inst(**{"aws:autoscaling:groupName": "their-group"})) is None


def test_fleet_hosts_are_left_to_the_fleets_own_token() -> None:
    assert provenance.mark(inst(**{"aws:ec2:fleet-id": "fleet-1"})) == "fleet:fleet-1"
    assert provenance.mark(inst(**{"aws:ec2spot:fleet-request-id": "sfr-1"})) == "fleet:sfr-1"


def test_no_request_tag_proves_nothing() -> None:
    assert provenance.mark({"ClientToken": f"{RID}-0", "Tags": []}) is None
