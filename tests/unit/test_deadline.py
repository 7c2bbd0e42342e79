"""The verb's deadline (deadline.py, cloud/session.py): a call is started only if its worst
case ends in time, and a run of quick calls is not stopped at half the budget."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from hostfactory_aws import deadline
from hostfactory_aws.cloud import session
from hostfactory_aws.errors import AwsError

CONFIG = {"AWS_REGION": "us-east-1", "VERB_DEADLINE_SEC": 120, "AWS_READ_TIMEOUT_MS": 900_000,
          "AWS_CONNECTION_TIMEOUT_MS": 10_000, "AWS_REQUEST_RETRY_ATTEMPTS": 4}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(deadline.time, "monotonic", lambda: now[0])
    return now


def fake_aws(clock: list[float], seconds_per_call: float) -> tuple[session.Aws, list[float]]:
    """An Aws whose EC2 client answers RunInstances after ``seconds_per_call`` (on the fake
    clock); returns it and the read timeout of every client made."""
    made: list[float] = []

    def create_client(service: str, region_name: str, config: Any, **_: Any) -> Any:
        made.append(config.read_timeout)

        def run_instances(**_: Any) -> dict[str, Any]:
            assert seconds_per_call <= config.read_timeout, "the call would have timed out"
            clock[0] += seconds_per_call
            return {}

        events = SimpleNamespace(register_first=lambda *a, **k: None)
        sid = SimpleNamespace(hyphenize=lambda: service)
        return SimpleNamespace(run_instances=run_instances, meta=SimpleNamespace(
            events=events, service_model=SimpleNamespace(service_id=sid)))

    deadline.begin()
    aws = session.Aws(dict(CONFIG))
    aws._make_session = lambda: SimpleNamespace(create_client=create_client)  # type: ignore
    return aws, made


def test_quick_calls_go_on_past_half_the_budget(clock: list[float]) -> None:
    aws, made = fake_aws(clock, 1.0)
    for _ in range(100):  # 100 RunInstances batches of 10,000 machines, 1 s each
        aws.call("ec2", "RunInstances")
    assert aws.calls["RunInstances"] == 100
    assert len(made) <= 4  # a new client each time half of what was left is spent
    assert made[0] <= 59 and all(b < a for a, b in zip(made, made[1:]))


def test_no_call_starts_that_could_end_past_the_deadline(clock: list[float]) -> None:
    aws, made = fake_aws(clock, 1.0)
    with pytest.raises(AwsError) as err:
        for _ in range(1000):
            aws.call("ec2", "RunInstances")
    assert err.value.code == session.DEADLINE_CODE and err.value.kind == "not_sent"
    assert clock[0] - 1000.0 <= CONFIG["VERB_DEADLINE_SEC"] - deadline.ANSWER_SLACK_SEC
    # every client was cut so that its worst attempt ended within what was left
    assert min(made) >= 0.5 and aws.left() < deadline.REFIT_MIN_LEFT_SEC + 1
