"""``hostfactory-aws validate --aws``: do the templates' AWS resources exist, may we launch?

Offline validation says a template is well formed; only AWS can say that its AMI, subnets,
security groups, key pair, instance types, instance profile, fleet role and launch template
exist in this account and region, and that the plugin's credentials may launch it. Each kind
of resource is asked about once for all templates (filters, so one missing id does not hide
the others), then every template's launch call is made with DryRun, which proves the IAM
permissions without launching anything.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Callable

from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import instance_types, launch_spec
from hostfactory_aws.cloud.error_codes import no_answer
from hostfactory_aws.context import Context
from hostfactory_aws.errors import AwsError, ConfigError

log = logging.getLogger(__name__)
FILTER_VALUES = 200  # values per EC2 filter
DRY_RUN_OK = "DryRunOperation"
UNREACHABLE = frozenset({"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                         "ConnectionClosedError", "ProxyConnectionError"})
# Every later call would fail the same way: stop at the first, one message.
BAD_CREDENTIALS = frozenset({"AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch",
                             "ExpiredToken", "UnrecognizedClientException",
                             "NoCredentialsError", "InvalidAccessKeyId"})


def stop_here(exc: AwsError) -> bool:
    """No answer, or credentials AWS rejects: no check after this one can tell more."""
    return (no_answer(exc.kind, exc.code) or exc.code in UNREACHABLE
            or exc.code in BAD_CREDENTIALS)


@dataclass
class Check:
    """One line of the summary: a template's field (or its DryRun), and what AWS said."""

    template: str
    check: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Kind:
    """A kind of resource templates name: the template field, and how to ask AWS about it."""

    label: str
    field: str
    values: Callable[[dict[str, Any]], list[str]]
    describe: Callable[[Any, list[str]], dict[str, Any]]
    global_: bool = False  # IAM: one per account, not per region


def _chunks(items: list[str], size: int = FILTER_VALUES) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _images(aws: Any, ids: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in _chunks(ids):
        resp = aws.call("ec2", "DescribeImages", Filters=[{"Name": "image-id", "Values": part}])
        out.update({i["ImageId"]: i for i in resp.get("Images", [])})
    return out


def _subnets(aws: Any, ids: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in _chunks(ids):
        resp = aws.call("ec2", "DescribeSubnets", Filters=[{"Name": "subnet-id", "Values": part}])
        out.update({s["SubnetId"]: s for s in resp.get("Subnets", [])})
    return out


def _security_groups(aws: Any, ids: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in _chunks(ids):
        resp = aws.call("ec2", "DescribeSecurityGroups",
                        Filters=[{"Name": "group-id", "Values": part}])
        out.update({g["GroupId"]: g for g in resp.get("SecurityGroups", [])})
    return out


def _key_pairs(aws: Any, names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in _chunks(names):
        resp = aws.call("ec2", "DescribeKeyPairs", Filters=[{"Name": "key-name", "Values": part}])
        out.update({k["KeyName"]: k for k in resp.get("KeyPairs", [])})
    return out


def _instance_types(aws: Any, names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in _chunks(names, 100):
        resp = aws.call("ec2", "DescribeInstanceTypes",
                        Filters=[{"Name": "instance-type", "Values": part}])
        out.update({t["InstanceType"]: t for t in resp.get("InstanceTypes", [])})
    return out


def _launch_templates(aws: Any, ids: list[str]) -> dict[str, Any]:
    """EC2 fails the whole call on one unknown id, so on that error ask one id at a time."""
    try:
        resp = aws.call("ec2", "DescribeLaunchTemplates", LaunchTemplateIds=ids)
        return {lt["LaunchTemplateId"]: lt for lt in resp.get("LaunchTemplates", [])}
    except AwsError as exc:
        if exc.kind != "not_found":
            raise
        if len(ids) == 1:
            return {}
    out: dict[str, Any] = {}
    for one in ids:
        out.update(_launch_templates(aws, [one]))
    return out


def iam_name(value: str) -> str:
    """An IAM name from a name or an ARN (``arn:aws:iam::1:instance-profile/path/name``)."""
    return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value


def _instance_profiles(aws: Any, values: list[str]) -> dict[str, Any]:
    """IAM has no batched describe: one GetInstanceProfile per distinct profile."""
    out: dict[str, Any] = {}
    for value in values:
        try:
            resp = aws.call("iam", "GetInstanceProfile", InstanceProfileName=iam_name(value))
        except AwsError as exc:
            if exc.code == "NoSuchEntity":
                continue
            raise
        out[value] = resp["InstanceProfile"]
    return out


def _roles(aws: Any, values: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for value in values:
        try:
            resp = aws.call("iam", "GetRole", RoleName=iam_name(value))
        except AwsError as exc:
            if exc.code == "NoSuchEntity":
                continue
            raise
        out[value] = resp["Role"]
    return out


def _one(key: str) -> Callable[[dict[str, Any]], list[str]]:
    return lambda t: [t[key]] if t.get(key) else []


KINDS = [
    Kind("images", "imageId", lambda t: [t["_resolvedImage"]] if t.get("_resolvedImage")
         else [], _images),
    Kind("instance types", "vmType", lambda t: list(t["vmTypes"]), _instance_types),
    Kind("subnets", "subnetId", lambda t: list(t["subnetIds"]), _subnets),
    Kind("security groups", "securityGroupIds", lambda t: list(t["securityGroupIds"]),
         _security_groups),
    Kind("key pairs", "keyName", _one("keyName"), _key_pairs),
    Kind("launch templates", "launchTemplateId", _one("launchTemplateId"), _launch_templates),
    Kind("instance profiles", "instanceProfile", _one("instanceProfile"), _instance_profiles,
         True),
    Kind("fleet roles", "fleetRole", _one("fleetRole"), _roles, True),
]


def run(ctx: Context, progress: Callable[[str], None]) -> list[Check]:
    """Every check for every template of ``ctx``; AWS errors become failed checks."""
    aws = ctx.aws
    region = ctx.config["AWS_REGION"]
    templates = [dict(t) for t in ctx.templates]
    checks: list[Check] = []
    _resolve_images(aws, templates, checks)
    kinds = [k for k in KINDS if any(k.values(t) for t in templates)]
    total = len(kinds) + len(templates)
    step = 0
    found: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        step += 1
        wanted = sorted({v for t in templates for v in kind.values(t)})
        try:
            found[kind.label] = kind.describe(aws, wanted)
            missing = [v for v in wanted if v not in found[kind.label]]
            summary = (f"{len(wanted) - len(missing)} of {len(wanted)} found"
                       + (f"; missing: {', '.join(missing)}" if missing else ""))
            for t in templates:
                mine = kind.values(t)
                if not mine:
                    continue
                gone = [v for v in mine if v not in found[kind.label]]
                where = "this account" if kind.global_ else region
                detail = (f"not found in {where}: {', '.join(gone)}" if gone
                          else _found_detail(kind, mine, found[kind.label]))
                checks.append(Check(t["templateId"], kind.field, not gone, detail))
        except AwsError as exc:
            if stop_here(exc):
                raise
            summary = f"could not check: {_aws_text(exc)}"
            for t in templates:
                if kind.values(t):
                    checks.append(Check(t["templateId"], kind.field, False, summary))
        progress(f"[{step}/{total}] {kind.label}: {summary}")
    for t in templates:
        step += 1
        for check in dry_runs(ctx, t, found.get("images", {})):
            checks.append(check)
            state = "ok" if check.ok else "FAIL"
            progress(f"[{step}/{total}] template {t['templateId']}: {check.check}: {state}"
                     + ("" if check.ok else f": {check.detail}"))
    order = {t["templateId"]: i for i, t in enumerate(templates)}
    checks.sort(key=lambda c: order.get(c.template, -1))  # stable: file order, then steps
    return checks


def _found_detail(kind: Kind, mine: list[str], found: dict[str, Any]) -> str:
    if kind.label == "instance profiles":
        prof = found[mine[0]]
        roles = [r.get("RoleName", "?") for r in prof.get("Roles", [])]
        return f"{prof.get('Arn', mine[0])}" + (f" (role {', '.join(roles)})" if roles
                                                 else " (holds no role: instances get none)")
    return ", ".join(mine)


def _resolve_images(aws: Any, templates: list[dict[str, Any]], checks: list[Check]) -> None:
    """SSM parameter paths -> AMI ids (one GetParameter per distinct path)."""
    resolved: dict[str, str | AwsError] = {}
    for t in templates:
        image = t.get("imageId")
        if not image:
            continue
        if image not in resolved:
            try:
                resolved[image] = instance_types.resolve_image(aws, image)
            except AwsError as exc:
                if stop_here(exc):
                    raise
                resolved[image] = exc
        value = resolved[image]
        if isinstance(value, AwsError):
            checks.append(Check(t["templateId"], "imageId", False,
                                f"SSM parameter {image}: {_aws_text(value)}"))
        else:
            t["_resolvedImage"] = value


def dry_runs(ctx: Context, t: dict[str, Any], images: dict[str, Any]) -> list[Check]:
    """The template's launch call(s) with DryRun=True, built exactly as a launch builds them.

    Every API ends in RunInstances (EC2 Fleet, Spot Fleet and Auto Scaling launch with the
    caller's permissions), so that is always tried; APIs that launch through a launch
    template we create also try CreateLaunchTemplate.
    """
    tid = t["templateId"]
    tags = tagmod.base_tags(ctx.provider, "req-validate", tid)
    image = t.get("_resolvedImage")
    if t.get("imageId") and not image:
        return [Check(tid, "DryRun", False, "skipped: imageId could not be resolved")]
    root = t.get("rootDeviceName")
    if "rootDeviceVolumeSize" in t and not root and image in images:
        root = images[image].get("RootDeviceName") or "/dev/xvda"
    try:
        common = launch_spec.instance_common(t, image, root, launch_spec.resource_tags(t, tags))
        data = launch_spec.user_data(t)
    except (OSError, ValueError, ConfigError) as exc:
        return [Check(tid, "DryRun", False, f"cannot build the launch parameters: {exc}")]
    out = []
    subnet = (t["subnetIds"] or [None])[0]
    params = launch_spec.run_instances_params(t, common, 1, subnet, "validate", data)
    params.pop("ClientToken", None)
    out.append(_dry_run(ctx, t, "RunInstances", params))
    if t["providerApi"] != "RunInstances" and not t.get("launchTemplateId"):
        lt = {"LaunchTemplateName": f"hf-validate-{tid}",
              "LaunchTemplateData": launch_spec.launch_template_data(t, common, data),
              "TagSpecifications": tagmod.tag_specs(["launch-template"],
                                                    launch_spec.resource_tags(t, tags))}
        out.append(_dry_run(ctx, t, "CreateLaunchTemplate", lt))
    return out


def _dry_run(ctx: Context, t: dict[str, Any], operation: str,
             params: dict[str, Any]) -> Check:
    tid, name = t["templateId"], f"DryRun {operation}"
    try:
        if operation == "RunInstances":
            resp = ctx.aws.call("ec2", "RunInstances", DryRun=True, **params)
        else:
            resp = ctx.aws.call("ec2", "CreateLaunchTemplate", DryRun=True, **params)
    except AwsError as exc:
        if exc.code == DRY_RUN_OK:
            return Check(tid, name, True, "permitted (DryRunOperation)")
        if stop_here(exc):
            raise
        if exc.code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException"):
            return Check(tid, name, False, _unauthorized(t, operation))
        return Check(tid, name, False, _aws_text(exc))
    # An endpoint that ignored DryRun really did it: undo, and say so.
    log.warning("%s: %s ignored DryRun; undoing", tid, operation)
    _undo(ctx, operation, resp)
    return Check(tid, name, True, "permitted (the endpoint ignored DryRun; undone)")


def _unauthorized(t: dict[str, Any], operation: str) -> str:
    need = [f"ec2:{operation}", "ec2:CreateTags"]
    if t.get("instanceProfile"):
        need.append("iam:PassRole (the instance profile's role)")
    return ("not permitted: the credentials lack " + " or ".join(need)
            + "; see docs/iam-policy.json (aws sts decode-authorization-message tells which)")


def _undo(ctx: Context, operation: str, resp: dict[str, Any]) -> None:
    try:
        if operation == "RunInstances":
            ids = [i["InstanceId"] for i in resp.get("Instances", [])]
            if ids:
                ctx.aws.call("ec2", "TerminateInstances", InstanceIds=ids)
        else:
            lt_id = resp.get("LaunchTemplate", {}).get("LaunchTemplateId")
            if lt_id:
                ctx.aws.call("ec2", "DeleteLaunchTemplate", LaunchTemplateId=lt_id)
    except AwsError as exc:
        log.error("could not undo %s: %s", operation, exc)


def _aws_text(exc: AwsError) -> str:
    if exc.code in UNREACHABLE or no_answer(exc.kind, exc.code):
        return f"AWS did not answer ({exc.code}): check AWS_ENDPOINT_URL, proxy and network"
    return f"{exc.code}: {exc.aws_message}"


def table(checks: list[Check]) -> list[str]:
    """The summary as aligned text lines."""
    rows = [("TEMPLATE", "CHECK", "RESULT", "DETAIL")]
    rows += [(c.template, c.check, "ok" if c.ok else "FAIL", c.detail) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return ["  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                       r[3]]).rstrip() for r in rows]
