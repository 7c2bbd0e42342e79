"""docs/iam-policy.json lists exactly the AWS actions the plugin calls.

The package's source is scanned for every AWS call (``aws.call("ec2", "RunInstances", ...)``,
``aws.paginate(...)``, and ``aws.client("ec2").describe_x(...)``), however the call is split
across lines. Every action called must be allowed by the policy, and every action the policy
allows must be called somewhere (or be one of the few that AWS checks on the plugin's behalf,
listed below with the reason), so the policy stays least-privilege as APIs are added.
"""

from __future__ import annotations

import functools
import io
import json
import re
import tokenize
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "hostfactory_aws"
POLICY = ROOT / "docs" / "iam-policy.json"
# The plumbing that makes the calls, and the demo that only ever talks to moto.
NOT_SCANNED = {"cloud/session.py", "admin/sandbox.py", "admin/sandbox_command.py"}
# Actions no line of ours names, that AWS nevertheless checks against the plugin's identity.
IMPLIED = {
    "iam:PassRole": "RunInstances/launch templates with an instance profile, Spot Fleet's "
                    "IamFleetRole",
    "iam:CreateServiceLinkedRole": "EC2 Fleet, Spot and Auto Scaling make their "
                                   "service-linked role on first use",
    "autoscaling:CreateOrUpdateTags": "CreateAutoScalingGroup with Tags (tag on create)",
}
# Called only for a template naming the admin's own launchTemplateId on an asynchronous API
# (the shipped conf has none): the generated policy then grants them on that template.
# Granted by the generator only when the config or templates need them, so the sample
# conf's policy (docs/iam-policy.json) leaves them out.
CONDITIONAL_ACTIONS = {"ec2:CreateLaunchTemplateVersion",
                            "ec2:DeleteLaunchTemplateVersions",
                            # AWS_KEY_FILE set: missing key pairs are imported or created
                            "ec2:CreateKeyPair", "ec2:ImportKeyPair"}
IAM_PREFIX = {"ec2": "ec2", "ssm": "ssm", "iam": "iam", "sts": "sts",
              "autoscaling": "autoscaling"}

STR = r"""(['"])([A-Za-z0-9_-]+)\{n}"""
CALL = re.compile(r"\.(call|paginate)\(\s*" + STR.format(n=2) + r"\s*,\s*" + STR.format(n=4),
                  re.S)
ANY_CALL = re.compile(r"\.(call|paginate)\(")
CLIENT = re.compile(r"\.client\(\s*" + STR.format(n=1) + r"\s*\)\s*\.\s*([a-z0-9_]+)\(\s*"
                    r"(?:(['\"])([a-z0-9_]+)\4)?", re.S)
ANY_CLIENT = re.compile(r"\.client\(")


def _strip_comments(text: str) -> str:
    """Comments out (a call in a comment is not a call); line numbers kept."""
    lines = text.splitlines(keepends=True)
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            line = lines[row - 1]
            lines[row - 1] = line[:col] + line[col + len(tok.string):]
    return "".join(lines)


@functools.cache
def _operations(service: str) -> dict[str, str]:
    """snake_case method -> Operation, from botocore's local service model (offline)."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


def scan(root: Path = PACKAGE) -> tuple[dict[str, set[str]], list[str]]:
    """(IAM action -> files calling it, calls the scanner cannot read)."""
    called: dict[str, set[str]] = {}
    opaque: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if str(path.relative_to(root)) in NOT_SCANNED:
            continue
        rel = str(path.relative_to(root.parent))
        text = _strip_comments(path.read_text(encoding="utf-8"))
        for m in ANY_CALL.finditer(text):
            lit = CALL.match(text, m.start())
            line = text.count("\n", 0, m.start()) + 1
            if not lit:
                opaque.append(f"{rel}:{line}: {text[m.start():m.start() + 60]!r}")
                continue
            service, op = lit.group(3), lit.group(5)
            _check_real(service, op, f"{rel}:{line}")
            called.setdefault(f"{IAM_PREFIX.get(service, service)}:{op}", set()).add(rel)
        for m in ANY_CLIENT.finditer(text):
            lit = CLIENT.match(text, m.start())
            line = text.count("\n", 0, m.start()) + 1
            if not lit:
                opaque.append(f"{rel}:{line}: {text[m.start():m.start() + 60]!r}")
                continue
            service, method = lit.group(2), lit.group(3)
            ops = _operations(service)
            if method in ("get_paginator", "get_waiter") and lit.group(5):
                method = lit.group(5)
            if method not in ops:
                opaque.append(f"{rel}:{line}: {service}.{method} is not an operation")
                continue
            called.setdefault(f"{IAM_PREFIX.get(service, service)}:{ops[method]}",
                              set()).add(rel)
    return called, opaque


def _check_real(service: str, op: str, where: str) -> None:
    assert op in set(_operations(service).values()), (
        f"{where}: {service} has no operation {op!r}")


def policy_actions(policy: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow", st
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        for a in actions:
            assert "*" not in a, f"{st.get('Sid')}: wildcard action {a} is not least privilege"
            out.add(a)
    return out


@pytest.fixture(scope="module")
def scanned() -> tuple[dict[str, set[str]], list[str]]:
    return scan()


@pytest.fixture(scope="module")
def allowed() -> set[str]:
    return policy_actions(json.loads(POLICY.read_text(encoding="utf-8")))


def test_every_aws_call_is_readable_by_the_scanner(scanned: Any) -> None:
    called, opaque = scanned
    assert not opaque, ("AWS calls must name service and operation as string literals so the "
                        "IAM policy can be checked: " + "; ".join(opaque))
    # The scan really sees the plugin's calls (a broken regex would find nothing).
    for action in ("ec2:RunInstances", "ec2:DescribeInstances", "ec2:TerminateInstances",
                   "ec2:CreateFleet", "sts:GetCallerIdentity", "ec2:CreateLaunchTemplate"):
        assert action in called, f"scanner did not find {action}"


def test_every_called_action_is_in_the_policy(scanned: Any, allowed: set[str]) -> None:
    called, _ = scanned
    missing = {a: sorted(files) for a, files in called.items()
               if a not in allowed and a not in CONDITIONAL_ACTIONS}
    assert not missing, f"add to docs/iam-policy.json: {missing}"


def test_every_policy_action_is_called_or_implied(scanned: Any, allowed: set[str]) -> None:
    called, _ = scanned
    unused = sorted(a for a in allowed if a not in called and a not in IMPLIED)
    assert not unused, f"docs/iam-policy.json allows actions the plugin never calls: {unused}"
    assert set(IMPLIED) <= allowed, f"implied actions missing: {set(IMPLIED) - allowed}"


def test_changes_to_existing_resources_are_limited_to_this_providers(
        allowed: set[str]) -> None:
    """Terminate/delete/modify carry the provider tag condition equal to THIS provider's
    name: any value of the tag would let one grid's credentials end another grid's hosts."""
    policy = json.loads(POLICY.read_text(encoding="utf-8"))
    destructive = {"ec2:TerminateInstances", "ec2:DeleteFleets", "ec2:DeleteLaunchTemplate",
                   "ec2:CancelSpotFleetRequests", "ec2:ModifyFleet",
                   "ec2:ModifySpotFleetRequest", "autoscaling:DeleteAutoScalingGroup",
                   "autoscaling:UpdateAutoScalingGroup", "autoscaling:DetachInstances",
                   "autoscaling:SuspendProcesses"}
    assert destructive <= allowed
    for st in policy["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        for a in set(actions) & destructive:
            equals = st.get("Condition", {}).get("StringEquals", {})
            service = "autoscaling" if a.startswith("autoscaling:") else "aws"
            key = f"{service}:ResourceTag/hostfactory:provider"
            assert equals.get(key) == "aws", (st.get("Sid"), a, st.get("Condition"))


def test_scanner_reads_calls_split_across_lines(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text(
        "def f(aws, ctx):\n"
        "    aws.call(\n        'ec2',\n        \"RunInstances\", MinCount=1)\n"
        "    for p in ctx.aws.paginate(\"ec2\",\n  \"DescribeSubnets\"):\n        pass\n"
        "    ctx.aws.client('sts').get_caller_identity()\n"
        "    ctx.aws.client(\"ec2\").get_paginator(\"describe_images\")\n"
        "    aws.call(service, op)  # opaque\n")
    called, opaque = scan(pkg)
    assert set(called) == {"ec2:RunInstances", "ec2:DescribeSubnets", "sts:GetCallerIdentity",
                           "ec2:DescribeImages"}
    assert len(opaque) == 1 and "m.py:10" in opaque[0]


def test_every_called_operation_is_in_the_lean_service_models(scanned: Any) -> None:
    """Clients read botocore's models cut to OPERATIONS: a call missing there would fail at
    a customer's, so it fails here first."""
    from hostfactory_aws.cloud.service_models import OPERATIONS

    called, _ = scanned
    service_of = {prefix: service for service, prefix in IAM_PREFIX.items()}
    missing = sorted(action for action in called
                     if action.split(":")[1] not in OPERATIONS.get(
                         service_of[action.split(":")[0]], ()))
    assert not missing, f"add to hostfactory_aws/cloud/service_models.OPERATIONS: {missing}"
    for service, ops in OPERATIONS.items():  # and every listed one is real
        assert ops <= set(_operations(service).values()), (service, ops - set(
            _operations(service).values()))
