"""EC2 instances: the one batched sweep, lookups by id or name, tagging and termination."""

from __future__ import annotations

import logging
from typing import Any, Iterable

from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud.session import Aws
from hostfactory_aws.errors import AwsError

log = logging.getLogger(__name__)
PAGE = 1000          # DescribeInstances' largest page
FILTER_VALUES = 200  # values per filter that EC2 accepts
TERMINATE_BATCH = 1000


def chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _collect(aws: Aws, filters: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for page in aws.paginate("ec2", "DescribeInstances", Filters=filters, MaxResults=PAGE):
        for res in page.get("Reservations", []):
            for inst in res.get("Instances", []):
                out[inst["InstanceId"]] = inst
    return out


def sweep(aws: Aws, provider: str) -> dict[str, dict[str, Any]]:
    """Every instance carrying this provider's tag, terminated ones included.

    One paginated call per 1,000 instances, however many requests are being polled.
    """
    return _collect(aws, [tagmod.provider_filter(provider)])


def lookup(aws: Aws, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Instances by id, whoever owns them; ids EC2 does not know are simply absent.

    A filter, not InstanceIds=, so one unknown id does not fail the whole call.
    """
    out: dict[str, dict[str, Any]] = {}
    for part in chunks(sorted(set(ids)), FILTER_VALUES):
        out.update(_collect(aws, [{"Name": "instance-id", "Values": part}]))
    return out


def lookup_ours(aws: Aws, provider: str, ids: list[str],
                known: int) -> dict[str, dict[str, Any]]:
    """Instances by id, in whichever way takes fewer calls.

    ``known`` is how many instances this provider has (the state's count): the tag sweep
    costs one call per 1,000 of them, ids one call per 200 asked. Returning 5,000 machines
    that way takes 5 calls, not 25; returning 10 of 5,000 still takes one. Ids the sweep
    does not list (not ours, or not listed yet) are then looked up by id, so the answer is
    the same either way.
    """
    wanted = set(ids)
    if -(-max(known, 1) // PAGE) >= -(-len(wanted) // FILTER_VALUES):
        return lookup(aws, ids)
    out = {iid: inst for iid, inst in sweep(aws, provider).items() if iid in wanted}
    rest = sorted(wanted - set(out))
    if rest:
        out.update(lookup(aws, rest))
    return out


def lookup_names(aws: Aws, names: list[str]) -> dict[str, dict[str, Any]]:
    """Instances by private DNS name or private IP, for returns that carry only ``name``."""
    out: dict[str, dict[str, Any]] = {}
    ips = [n for n in names if _is_ip(n)]
    dns = [n for n in names if not _is_ip(n)]
    for field, values in (("private-dns-name", dns), ("private-ip-address", ips)):
        for part in chunks(sorted(set(values)), FILTER_VALUES):
            for inst in _collect(aws, [{"Name": field, "Values": part}]).values():
                key = inst.get("PrivateDnsName") if field == "private-dns-name" else inst.get(
                    "PrivateIpAddress")
                if key:
                    out[key] = inst
    return out


def _is_ip(name: str) -> bool:
    parts = name.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def tag(aws: Aws, ids: list[str], tags: dict[str, str]) -> None:
    for part in chunks(ids, TERMINATE_BATCH):
        aws.call("ec2", "CreateTags", Resources=part, Tags=tagmod.as_aws(tags))


def terminate(aws: Aws, ids: list[str]) -> dict[str, str]:
    """Terminate in batches; returns {instance id: error message} for refusals.

    Throttling and unanswered calls are raised, not recorded: their outcome is unknown.
    """
    refused: dict[str, str] = {}
    for part in chunks(ids, TERMINATE_BATCH):
        refused.update(_terminate_batch(aws, part))
    return refused


def _terminate_batch(aws: Aws, part: list[str]) -> dict[str, str]:
    """One batch; a refusal of the whole batch is split until each refused host stands
    alone, so one protected or malformed id neither keeps the others alive nor fails them."""
    try:
        aws.call("ec2", "TerminateInstances", InstanceIds=part)
        return {}
    except AwsError as exc:
        if exc.kind in ("throttle", "unknown"):
            raise
        if len(part) > 1:
            half = len(part) // 2
            return {**_terminate_batch(aws, part[:half]), **_terminate_batch(aws, part[half:])}
        log.error("TerminateInstances refused %s: %s", part[0], exc)
        return {part[0]: f"TerminateInstances refused: {exc.code}: {exc.aws_message}"}
