"""The pending timeout: per template when set, else the config's, never short for .metal."""

from __future__ import annotations

from types import SimpleNamespace

from hostfactory_aws import machines, reconcile

CTX = SimpleNamespace(config={"AWS_INSTANCE_PENDING_TIMEOUT_SEC": 180})


def test_metal_types_get_at_least_half_an_hour_by_default() -> None:
    assert reconcile.pending_limit(CTX, {}, "m5.large") == 180
    assert reconcile.pending_limit(CTX, {}, "c5.metal") == reconcile.METAL_PENDING_MIN_SEC
    pending_12_min = {"State": {"Name": "pending"}, "LaunchTime": 1000}
    limit = reconcile.pending_limit(CTX, {}, "i3.metal")
    assert not machines.overdue_pending(pending_12_min, 1000 + 12 * 60, limit)


def test_the_template_sets_its_own() -> None:
    rec = {"pendingTimeoutSec": 900}
    assert reconcile.pending_limit(CTX, rec, "m5.large") == 900
    assert reconcile.pending_limit(CTX, rec, "c5.metal") == 900
