"""Spot interruption notices: the request status EC2 reports -> what getReturnRequests says.

An interrupted Spot Instance shows it first in its Spot request's status: ``marked-for-*``
about two minutes before EC2 acts (the notice), then ``instance-terminated-*`` or
``instance-stopped-*`` once it has. Codes that record what a user did (``*-by-user``) are
not the cloud taking anything back: a stop or termination by hand is reported from the
instance state instead, where a return made by HostFactory itself is told apart.

Pure mapping, plus the one batched DescribeSpotInstanceRequests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hostfactory_aws.cloud.session import Aws
from hostfactory_aws.machines import epoch

# EC2 sends the interruption notice this many seconds before it stops or terminates.
NOTICE_SECONDS = 120
FILTER_VALUES = 200  # values per filter that EC2 accepts
PAGE = 1000          # DescribeSpotInstanceRequests' largest page

# The instance is still up, EC2 will take it when the notice runs out.
NOTICE_CODES = frozenset({
    "marked-for-termination", "marked-for-stop", "marked-for-hibernation",
    "marked-for-stop-by-experiment",
})
# EC2 (or an AWS FIS experiment acting as EC2) has already taken it.
RECLAIMED_CODES = frozenset({
    "instance-terminated-by-price", "instance-terminated-no-capacity",
    "instance-terminated-capacity-oversubscribed",
    "instance-terminated-launch-group-constraint", "instance-terminated-by-service",
    "instance-terminated-by-schedule", "instance-terminated-by-experiment",
    "instance-stopped-by-price", "instance-stopped-no-capacity",
    "instance-stopped-capacity-oversubscribed", "instance-stopped-by-experiment",
})
# A person (or HostFactory's own return) did it: never a reclaim by the cloud.
USER_CODES = frozenset({
    "instance-terminated-by-user", "spot-instance-terminated-by-user",
    "instance-stopped-by-user", "request-canceled-and-instance-running",
})
GONE_INSTANCE_STATES = frozenset({"shutting-down", "terminated", "stopping", "stopped"})


@dataclass(frozen=True)
class Notice:
    """EC2 is taking a Spot Instance back: why, and how many seconds are left."""

    code: str
    message: str
    grace_period: int
    pending: bool  # True: a notice, the instance is still up; False: already taken

    @property
    def reason(self) -> str:
        text = f"Spot {self.code}"
        return f"{text}: {self.message}" if self.message else text


def classify(code: str) -> str:
    """Spot request status code -> ``notice`` | ``reclaimed`` | ``none``.

    Unknown future codes follow AWS's naming: ``marked-for-*`` is a notice, and
    ``instance-{terminated,stopped,hibernated}-*`` not done by a user is a reclaim.
    """
    if code in USER_CODES or "by-user" in code:
        return "none"
    if code in NOTICE_CODES or code.startswith("marked-for-"):
        return "notice"
    if code in RECLAIMED_CODES or code.startswith(
            ("instance-terminated-", "instance-stopped-", "instance-hibernated-")):
        return "reclaimed"
    return "none"


def grace_period(update_time: Any, now: float, notice_seconds: int = NOTICE_SECONDS) -> int:
    """Seconds left of a notice given at ``update_time``: 120 minus its age, never below 0.

    A missing time counts as an old notice (0): HostFactory had better drain at once than
    trust a countdown nobody started. A time in the future (clock skew) gives the full 120.
    """
    given = epoch(update_time)
    if not given:
        return 0
    return int(max(0, min(notice_seconds, notice_seconds - (now - given))))


def notice(request: dict[str, Any] | None, instance: dict[str, Any],
           now: float) -> Notice | None:
    """The interruption notice a Spot request carries for this instance, if any.

    A persistent request re-fulfilled with another instance speaks for that one, not this.
    """
    if not request:
        return None
    if request.get("InstanceId") and request["InstanceId"] != instance.get("InstanceId"):
        return None
    status = request.get("Status") or {}
    code = status.get("Code") or ""
    kind = classify(code)
    if kind == "none":
        return None
    gone = (instance.get("State") or {}).get("Name") in GONE_INSTANCE_STATES
    if kind == "notice" and not gone:
        return Notice(code, status.get("Message") or "",
                      grace_period(status.get("UpdateTime"), now), True)
    return Notice(code, status.get("Message") or "", 0, False)


def spot_request_id(instance: dict[str, Any]) -> str:
    """The Spot request behind an instance, or "" for On-Demand instances."""
    if instance.get("InstanceLifecycle") != "spot":
        return ""
    return instance.get("SpotInstanceRequestId") or ""


# Every status code ``classify`` can call a notice or a reclaim: the known ones, and AWS's
# naming patterns for codes to come (EC2 filters take ``*`` wildcards).
TAKEN_BACK_FILTER = sorted(NOTICE_CODES | RECLAIMED_CODES) + [
    "marked-for-*", "instance-terminated-*", "instance-stopped-*", "instance-hibernated-*"]


def describe(aws: Aws, request_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The Spot requests among ``request_ids`` that may carry a notice or a reclaim.

    Up to 200 ids: those requests, in one call (a filter, so one unknown id does not fail
    the lot). More: the region's requests whose status is being or was taken back, one
    paginated call however many Spot Instances the grid holds (5,000 took 25 calls by id),
    kept to ours. Both give ``notice`` the same answer: a request that is not listed has
    nothing to report. Any failure is raised: a partial answer is no answer.
    """
    ids = sorted(set(i for i in request_ids if i))
    if len(ids) > FILTER_VALUES:
        wanted = set(ids)
        return {rid: req for rid, req in _pages(aws, "status-code", TAKEN_BACK_FILTER).items()
                if rid in wanted}
    return _pages(aws, "spot-instance-request-id", ids) if ids else {}


def _pages(aws: Aws, name: str, values: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for page in aws.paginate("ec2", "DescribeSpotInstanceRequests", MaxResults=PAGE,
                             Filters=[{"Name": name, "Values": values}]):
        for req in page.get("SpotInstanceRequests", []):
            out[req["SpotInstanceRequestId"]] = req
    return out
