"""RunInstances: best effort, in batches, spreading over the template's subnets.

Each batch asks MinCount 1 / MaxCount n with a ClientToken derived from the request id and
batch number, so botocore's retries (and a re-run) never launch a batch twice. A subnet
that runs short of capacity is left for the next one.
"""

from __future__ import annotations

import logging
from typing import Any

from hostfactory_aws import machines
from hostfactory_aws.cloud import launch_spec
from hostfactory_aws.cloud.apis import new_launch, no_progress, prepare, release_templates
from hostfactory_aws.context import Context
from hostfactory_aws.errors import AwsError

log = logging.getLogger(__name__)
BATCH = 100  # AWS advises RunInstances batches of at most 100


def launch(ctx: Context, t: dict[str, Any], request_id: str, units: int,
           tags: dict[str, str]) -> dict[str, Any]:
    common, data = prepare(ctx, t, tags)
    result = new_launch(units)
    subnets = t["subnetIds"] or [None]
    remaining, batch, subnet_i = units, 0, 0
    last_error: AwsError | None = None
    while remaining > 0 and subnet_i < len(subnets):
        count = min(remaining, BATCH)
        params = launch_spec.run_instances_params(t, common, count, subnets[subnet_i],
                                                  f"{request_id}-{batch}", data)
        batch += 1
        try:
            resp = ctx.aws.call("ec2", "RunInstances", **params)
        except AwsError as exc:
            last_error = exc
            result["errors"].append(f"{exc.code}: {exc.aws_message}")
            if exc.kind == "capacity" and subnet_i + 1 < len(subnets):
                log.warning("%s: %s in subnet %s, trying the next subnet", request_id,
                            exc.code, subnets[subnet_i])
                subnet_i += 1
                continue
            break
        got = resp.get("Instances", [])
        for inst in got:
            result["instances"][inst["InstanceId"]] = {
                "units": 1.0, "name": machines.host_name(inst), "type": inst.get("InstanceType")}
        remaining -= len(got)
        if len(got) < count:  # EC2 gave what it had: this subnet is short
            subnet_i += 1
    if not result["instances"] and last_error is not None:
        raise last_error
    return result


def describe(ctx: Context, recs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return no_progress(recs)


def settle(ctx: Context, rec: dict[str, Any], running_units: float) -> None:
    """Nothing launches after the call returned."""


def before_return(ctx: Context, rec: dict[str, Any], units_by_id: dict[str, float]) -> set[str]:
    return set()


def cleanup(ctx: Context, rec: dict[str, Any]) -> None:
    """RunInstances leaves nothing behind but the instances themselves; a record rebuilt
    from AWS whose API is unknown may still name a launch template made for its request."""
    release_templates(ctx, rec)
