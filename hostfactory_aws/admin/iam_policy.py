"""``hostfactory-aws iam-policy``: the least-privilege IAM policy for this config and templates.

Pure: config + templates (+ the roles the instance profiles hold, when IAM was asked) in, a
policy document out. What it grants, and why (docs/iam.md says the same for people):

- reads (Describe*) on ``*``: EC2 and Auto Scaling describes take no resource-level limits;
- creating (RunInstances, CreateFleet, CreateLaunchTemplate, RequestSpotFleet,
  CreateAutoScalingGroup) only with ``aws:RequestTag/hostfactory:provider`` equal to this
  provider's name, on the resources the plugin tags at creation (instances, volumes, fleets,
  launch templates, Spot Fleet requests, groups); the resources a launch uses but does not
  create or tag (images, subnets, security groups, key pairs, network interfaces, snapshots,
  the launch template a fleet launches from) are named by the templates where they can be;
- tagging only in the same create call (``ec2:CreateAction``) or on resources already tagged
  for this provider; changing and ending (terminate, delete, cancel, modify, update) only with
  ``aws:ResourceTag/hostfactory:provider`` equal to this provider, so one grid's credentials
  cannot end another grid's hosts;
- ``iam:PassRole`` only on the instance profiles' roles and the Spot Fleet roles the templates
  name, and only to the service that uses them;
- ``ssm:GetParameter`` only on the image parameter paths the templates use;
- ``iam:CreateServiceLinkedRole`` only for the service-linked roles of the APIs in use.
"""

from __future__ import annotations

from typing import Any

TAG = "hostfactory:provider"
READS = ["ec2:DescribeFleets", "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
         "ec2:DescribeInstances", "ec2:DescribeKeyPairs",
         "ec2:DescribeLaunchTemplateVersions", "ec2:DescribeLaunchTemplates",
         "ec2:DescribeSecurityGroups", "ec2:DescribeSpotFleetRequests",
         "ec2:DescribeSpotInstanceRequests", "ec2:DescribeSubnets", "ec2:DescribeVolumes",
         "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
         "autoscaling:DescribeScalingActivities"]
EC2_CHANGES = ["ec2:CancelSpotFleetRequests", "ec2:CreateTags", "ec2:DeleteFleets",
               "ec2:DeleteLaunchTemplate", "ec2:ModifyFleet", "ec2:ModifySpotFleetRequest",
               "ec2:TerminateInstances"]
ASG_CHANGES = ["autoscaling:DeleteAutoScalingGroup", "autoscaling:DetachInstances",
               "autoscaling:SuspendProcesses", "autoscaling:UpdateAutoScalingGroup"]
LT_VERSIONS = ["ec2:CreateLaunchTemplateVersion", "ec2:DeleteLaunchTemplateVersions"]
CHECKS = ["autoscaling:DescribeAccountLimits", "iam:GetInstanceProfile", "iam:GetRole",
          "sts:GetCallerIdentity"]
# service-linked role per AWS service name (made by AWS on the API's first use)
SERVICE_LINKED = {"autoscaling.amazonaws.com": "AWSServiceRoleForAutoScaling",
                  "ec2fleet.amazonaws.com": "AWSServiceRoleForEC2Fleet",
                  "spot.amazonaws.com": "AWSServiceRoleForEC2Spot",
                  "spotfleet.amazonaws.com": "AWSServiceRoleForEC2SpotFleet"}


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def ssm_path(image: str) -> str | None:
    """The SSM parameter path of an imageId, or None for an AMI id."""
    path = image[len("resolve:ssm:"):] if image.startswith("resolve:ssm:") else image
    return path if path.startswith("/") else None


def apis_in_use(templates: list[dict[str, Any]]) -> set[str]:
    return {t.get("providerApi", "RunInstances") for t in templates}


def _role_arns(value: str, part: str) -> list[str]:
    """A role name or ARN -> the ARNs to allow (any path, when only the name is known)."""
    if value.startswith("arn:"):
        return [value]
    return [f"arn:{part}:iam::*:role/{value}", f"arn:{part}:iam::*:role/*/{value}"]


def _profile_roles(value: str, part: str, known: dict[str, list[str]] | None) -> list[str]:
    """The roles an instance profile holds: asked of IAM, else assumed to share its name (as
    the console makes them), in the profile's account when it is given as an ARN."""
    if known is not None and value in known:
        return known[value]
    name = value.rsplit("/", 1)[-1]
    account = value.split(":")[4] if value.startswith("arn:") else "*"
    return [f"arn:{part}:iam::{account}:role/{name}", f"arn:{part}:iam::{account}:role/*/{name}"]


def _named(kind: str, values: set[str], wildcard: bool, prefix: str) -> list[str]:
    if wildcard or not values:
        return [f"{prefix}{kind}/*"] if wildcard else []
    return [f"{prefix}{kind}/{v}" for v in sorted(values)]


def policy(config: dict[str, Any], templates: list[dict[str, Any]], provider: str,
           profile_roles: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The policy document for these templates, with conditions on this provider's tag."""
    region = config["AWS_REGION"]
    part = partition(region)
    ec2 = f"arn:{part}:ec2:{region}:*:"
    apis = apis_in_use(templates)
    via_lt = [t for t in templates if t.get("providerApi", "RunInstances") != "RunInstances"
              and not t.get("launchTemplateId")]
    opaque = any(t.get("launchTemplateId") for t in templates)  # what it names is unknown
    create = ["ec2:RunInstances"]
    created = [f"{ec2}instance/*", f"{ec2}volume/*"]
    create_actions = ["RunInstances"]
    if "EC2Fleet" in apis:
        create.append("ec2:CreateFleet")
        created.append(f"{ec2}fleet/*")
        create_actions.append("CreateFleet")
    if via_lt:
        create.append("ec2:CreateLaunchTemplate")
        created.append(f"{ec2}launch-template/*")
        create_actions.append("CreateLaunchTemplate")
    if "SpotFleet" in apis:
        create.append("ec2:RequestSpotFleet")
        created.append(f"{ec2}spot-fleet-request/*")
        create_actions.append("RequestSpotFleet")
    if any(t.get("priceType") in ("spot", "heterogeneous") for t in templates):
        created.append(f"{ec2}spot-instances-request/*")
    mine = {"StringEquals": {f"aws:RequestTag/{TAG}": provider}}
    statements: list[dict[str, Any]] = [
        {"Sid": "ReadEc2AndAutoScaling", "Effect": "Allow", "Action": READS, "Resource": "*"},
        {"Sid": "CreateOnlyTaggedForThisProvider", "Effect": "Allow", "Action": create,
         "Resource": created, "Condition": mine},
        {"Sid": "UseTheTemplatesResourcesInLaunches", "Effect": "Allow",
         "Action": [a for a in create if a != "ec2:CreateLaunchTemplate"],
         "Resource": _used(templates, ec2, f"arn:{part}:ec2:{region}::", opaque)},
        {"Sid": "TagOnlyInTheCreateCall", "Effect": "Allow", "Action": "ec2:CreateTags",
         "Resource": "*", "Condition": {"StringEquals": {
             "ec2:CreateAction": sorted(create_actions), f"aws:RequestTag/{TAG}": provider}}},
        {"Sid": "ChangeOnlyThisProvidersEc2Resources", "Effect": "Allow",
         "Action": EC2_CHANGES, "Resource": "*",
         "Condition": {"StringEquals": {f"aws:ResourceTag/{TAG}": provider}}},
    ]
    if config.get("AWS_KEY_FILE"):  # IBM's AWS_KEY_FILE: import or create missing key pairs
        statements.append({"Sid": "KeyPairsOfAwsKeyFile", "Effect": "Allow",
                           "Action": ["ec2:CreateKeyPair", "ec2:ImportKeyPair"],
                           "Resource": f"{ec2}key-pair/*"})
    if "ASG" in apis:
        statements.append({
            "Sid": "CreateOnlyTaggedAutoScalingGroups", "Effect": "Allow",
            "Action": ["autoscaling:CreateAutoScalingGroup", "autoscaling:CreateOrUpdateTags"],
            "Resource": "*", "Condition": mine})
    statements.append({
        "Sid": "ChangeOnlyThisProvidersAutoScalingGroups", "Effect": "Allow",
        "Action": ASG_CHANGES, "Resource": "*",
        "Condition": {"StringEquals": {f"autoscaling:ResourceTag/{TAG}": provider}}})
    versioned = sorted({t["launchTemplateId"] for t in templates if t.get("launchTemplateId")
                        and t.get("providerApi", "RunInstances") != "RunInstances"
                        and t.get("fleetType") != "instant"})
    if versioned:  # a tagged version per request of the admin's own template
        statements.append({
            "Sid": "TaggedVersionsOfTheAdminsLaunchTemplates", "Effect": "Allow",
            "Action": LT_VERSIONS,
            "Resource": [f"{ec2}launch-template/{lt}" for lt in versioned]})
    statements += _ssm(templates, part, region)
    statements += _pass_role(templates, part, profile_roles)
    statements += _service_linked(templates, apis, part)
    statements.append({"Sid": "ValidateAndDoctor", "Effect": "Allow", "Action": CHECKS,
                       "Resource": "*"})
    return {"Version": "2012-10-17", "Statement": statements}


def _used(templates: list[dict[str, Any]], ec2: str, owned_by_aws: str,
          opaque: bool) -> list[str]:
    """Resources a launch uses without creating or tagging them, by name where the templates
    name them all (a launch template the plugin did not make could name anything)."""
    images = {t["imageId"] for t in templates if t.get("imageId") and not ssm_path(t["imageId"])}
    any_ssm = any(ssm_path(t.get("imageId") or "") for t in templates)
    subnets = {s for t in templates for s in t.get("subnetIds") or []}
    no_subnet = any(not t.get("subnetIds") for t in templates)  # the default VPC's subnets
    groups = {g for t in templates for g in t.get("securityGroupIds") or []}
    no_group = any(not t.get("securityGroupIds") for t in templates)  # the default group
    keys = {t["keyName"] for t in templates if t.get("keyName")}
    out = (_named("image", images, opaque or any_ssm, owned_by_aws)
           + _named("subnet", subnets, opaque or no_subnet, ec2)
           + _named("security-group", groups, opaque or no_group, ec2)
           + _named("key-pair", keys, opaque, ec2)
           + [f"{ec2}network-interface/*", f"{ec2}launch-template/*",
              f"{owned_by_aws}snapshot/*"])
    if opaque or any(t.get("placementGroupName") for t in templates):
        out.append(f"{ec2}placement-group/*")
    return out


def _ssm(templates: list[dict[str, Any]], part: str, region: str) -> list[dict[str, Any]]:
    paths = sorted({p for t in templates if (p := ssm_path(t.get("imageId") or ""))})
    if not paths:
        return []
    arns = [f"arn:{part}:ssm:{region}:{'' if p.startswith('/aws/service/') else '*'}:"
            f"parameter{p}" for p in paths]
    return [{"Sid": "ResolveTheTemplatesImageParameters", "Effect": "Allow",
             "Action": "ssm:GetParameter", "Resource": arns}]


def _pass_role(templates: list[dict[str, Any]], part: str,
               known: dict[str, list[str]] | None) -> list[dict[str, Any]]:
    out = []
    profiles = sorted({t["instanceProfile"] for t in templates if t.get("instanceProfile")})
    roles = sorted({r for p in profiles for r in _profile_roles(p, part, known)})
    if roles:
        out.append({"Sid": "PassOnlyTheInstanceProfilesRoles", "Effect": "Allow",
                    "Action": "iam:PassRole", "Resource": roles,
                    "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}})
    fleet = sorted({r for t in templates if t.get("fleetRole")
                    for r in _role_arns(t["fleetRole"], part)})
    if fleet:
        out.append({"Sid": "PassOnlyTheSpotFleetRoles", "Effect": "Allow",
                    "Action": "iam:PassRole", "Resource": fleet,
                    "Condition": {"StringEquals": {
                        "iam:PassedToService": "spotfleet.amazonaws.com"}}})
    return out


def _service_linked(templates: list[dict[str, Any]], apis: set[str],
                    part: str) -> list[dict[str, Any]]:
    names = set()
    if "EC2Fleet" in apis:
        names.add("ec2fleet.amazonaws.com")
    if "SpotFleet" in apis:
        names.add("spotfleet.amazonaws.com")
    if "ASG" in apis:
        names.add("autoscaling.amazonaws.com")
    if any(t.get("priceType") in ("spot", "heterogeneous") for t in templates):
        names.add("spot.amazonaws.com")
    if not names:
        return []
    arns = [f"arn:{part}:iam::*:role/aws-service-role/{n}/{SERVICE_LINKED[n]}"
            for n in sorted(names)]
    return [{"Sid": "ServiceLinkedRolesOnFirstUse", "Effect": "Allow",
             "Action": "iam:CreateServiceLinkedRole", "Resource": arns,
             "Condition": {"StringEquals": {"iam:AWSServiceName": sorted(names)}}}]


def profile_roles(ctx: Any) -> dict[str, list[str]]:
    """Ask IAM which roles each instance profile of the templates holds."""
    out: dict[str, list[str]] = {}
    for t in ctx.templates:
        value = t.get("instanceProfile")
        if value and value not in out:
            resp = ctx.aws.call("iam", "GetInstanceProfile",
                                InstanceProfileName=value.rsplit("/", 1)[-1])
            out[value] = [r["Arn"] for r in resp["InstanceProfile"].get("Roles", [])]
    return out
