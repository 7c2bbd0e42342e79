"""``hostfactory-aws validate --aws``: resources exist (batched), DryRun proves permissions."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support.hostfactory import ACCOUNT, HostFactory, lines

PROFILE, ROLE, KEY = "grid-compute", "grid-spot-fleet", "grid-admin"


def _resources(site: HostFactory) -> dict[str, str]:
    """A key pair, security group, instance profile (with a role) and a fleet role in moto."""
    ec2, iam = site.server.ec2, site.server.client("iam")
    ec2.create_key_pair(KeyName=KEY)
    vpc = ec2.describe_subnets(SubnetIds=[site.subnets[0]])["Subnets"][0]["VpcId"]
    sg = ec2.create_security_group(GroupName="grid", Description="grid", VpcId=vpc)["GroupId"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName="grid-compute-role", AssumeRolePolicyDocument=trust)
    iam.create_instance_profile(InstanceProfileName=PROFILE)
    iam.add_role_to_instance_profile(InstanceProfileName=PROFILE, RoleName="grid-compute-role")
    role_arn = iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    return {"sg": sg, "role": role_arn,
            "profile_arn": f"arn:aws:iam::{ACCOUNT}:instance-profile/{PROFILE}"}


def _templates(site: HostFactory, res: dict[str, str]) -> list[dict[str, Any]]:
    return [
        site.template("RI", keyName=KEY, securityGroupIds=[res["sg"]], instanceProfile=PROFILE,
                      rootDeviceVolumeSize=20, userData="#!/bin/bash\ntrue\n"),
        site.template("Fleet", vmType=None, vmTypes={"m5.large": 1, "m5.xlarge": 2},
                      providerApi="EC2Fleet", securityGroupIds=res["sg"],
                      instanceProfile=res["profile_arn"]),
        site.template("Spot", vmType=None, vmTypes={"m5.large": 1}, providerApi="SpotFleet",
                      priceType="spot", fleetRole=res["role"], subnetId=site.subnets[0]),
    ]


def _rows(stdout: str) -> list[tuple[str, str, str, str]]:
    """The summary table: (template, check, result, detail) per row, header checked."""
    out = lines(stdout)
    assert re.match(r"^TEMPLATE\s+CHECK\s+RESULT\s+DETAIL$", out[0]), out[0]
    rows = []
    for line in out[1:]:
        parts = re.split(r"\s{2,}", line, maxsplit=3)
        rows.append(tuple(parts + [""] * (4 - len(parts))))
    return rows  # type: ignore[return-value]


def test_all_resources_exist_and_dry_runs_pass(site: HostFactory) -> None:
    res = _resources(site)
    site.write_templates(_templates(site, res))
    site.server.reset_calls()
    proc = site.cli("validate", "--aws")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _rows(proc.stdout)
    assert all(r[2] == "ok" for r in rows), rows
    checks = {(r[0], r[1]) for r in rows}
    for tid, field in [("RI", "imageId"), ("RI", "subnetId"), ("RI", "securityGroupIds"),
                       ("RI", "keyName"), ("RI", "instanceProfile"), ("RI", "vmType"),
                       ("RI", "DryRun RunInstances"), ("Fleet", "instanceProfile"),
                       ("Fleet", "DryRun RunInstances"), ("Fleet", "DryRun CreateLaunchTemplate"),
                       ("Spot", "fleetRole"), ("Spot", "DryRun CreateLaunchTemplate")]:
        assert (tid, field) in checks, (tid, field, rows)
    # Rows come in file order, each template's together.
    order = [r[0] for r in rows]
    assert order == sorted(order, key=["RI", "Fleet", "Spot"].index)
    detail = {(r[0], r[1]): r[3] for r in rows}
    assert "grid-compute-role" in detail[("RI", "instanceProfile")]
    assert "DryRunOperation" in detail[("RI", "DryRun RunInstances")]

    calls = site.server.calls()
    for describe in ("DescribeImages", "DescribeSubnets", "DescribeSecurityGroups",
                     "DescribeKeyPairs", "DescribeInstanceTypes"):
        assert calls.get(describe) == 1, (describe, calls)  # batched across templates
    assert calls["RunInstances"] == 3 and calls["CreateLaunchTemplate"] == 2
    assert calls["GetRole"] == 1 and calls["GetInstanceProfile"] == 2  # name and ARN
    # DryRun launched nothing and left no launch template behind.
    assert site.server.instances() == {}
    assert site.server.ec2.describe_launch_templates()["LaunchTemplates"] == []

    progress = [m.groups() for m in re.finditer(r"^\[(\d+)/(\d+)\] (.*)$", proc.stderr, re.M)]
    steps = [int(i) for i, _, _ in progress]
    totals = {int(n) for _, n, _ in progress}
    assert len(totals) == 1 and steps[-1] == totals.pop()
    assert steps == sorted(steps) and steps[0] == 1
    assert any(text.startswith("template Fleet: DryRun CreateLaunchTemplate: ok")
               for _, _, text in progress)


MISSING = {
    "imageId": ({"imageId": "ami-0123456789abcdef0"}, "ami-0123456789abcdef0"),
    "subnetId": ({"subnetId": "subnet-0123456789abcdef0"}, "subnet-0123456789abcdef0"),
    "securityGroupIds": ({"securityGroupIds": ["sg-0123456789abcdef0"]},
                         "sg-0123456789abcdef0"),
    "keyName": ({"keyName": "nobody-key"}, "nobody-key"),
    "instanceProfile": ({"instanceProfile": "no-such-profile"}, "no-such-profile"),
    "instanceProfile-arn": (
        {"instanceProfile": f"arn:aws:iam::{ACCOUNT}:instance-profile/path/gone"},
        f"arn:aws:iam::{ACCOUNT}:instance-profile/path/gone"),
    "vmType": ({"vmType": "m5.huge"}, "m5.huge"),
    "fleetRole": ({"providerApi": "SpotFleet", "priceType": "spot",
                   "fleetRole": f"arn:aws:iam::{ACCOUNT}:role/no-such-role"},
                  f"arn:aws:iam::{ACCOUNT}:role/no-such-role"),
}


def test_each_missing_resource_fails_its_own_template_only(site: HostFactory) -> None:
    """One template per missing kind, plus a good one, checked in one run (batched)."""
    res = _resources(site)
    good = site.template("Good", keyName=KEY, securityGroupIds=[res["sg"]],
                         instanceProfile=PROFILE)
    bad = [site.template(f"Bad-{case}", **fields) for case, (fields, _) in MISSING.items()]
    site.write_templates([good] + bad)
    site.server.reset_calls()
    proc = site.cli("validate", "--aws", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False
    failed = [c for c in doc["checks"] if not c["ok"]]
    assert "Good" not in {c["template"] for c in failed}, failed
    for case, (_, value) in MISSING.items():
        field = case.split("-")[0]
        where = "this account" if field in ("instanceProfile", "fleetRole") else "us-east-1"
        mine = [c for c in failed if c["template"] == f"Bad-{case}"]
        assert {"template": f"Bad-{case}", "check": field, "ok": False,
                "detail": f"not found in {where}: {value}"} in mine, (case, mine)
        # Its DryRun may fail too (EC2 checks some ids there), nothing else may.
        assert all(c["check"] in (field, "DryRun RunInstances", "DryRun CreateLaunchTemplate")
                   for c in mine), mine
    for describe in ("DescribeImages", "DescribeSubnets", "DescribeSecurityGroups",
                     "DescribeKeyPairs", "DescribeInstanceTypes"):
        assert site.server.calls().get(describe) == 1, describe
    err = lines(proc.stderr)
    assert re.match(rf"hostfactory-aws validate --aws: {len(failed)} of {len(doc['checks'])} "
                    "checks failed", err[-1]), err


def test_missing_permission_is_named(site: HostFactory) -> None:
    site.write_templates([site.template("A", instanceProfile=PROFILE)])
    _resources(site)
    site.server.faults.deny("RunInstances")
    proc = site.cli("validate", "--aws")
    assert proc.returncode == 1
    rows = {(r[0], r[1]): r for r in _rows(proc.stdout)}
    dry = rows[("A", "DryRun RunInstances")]
    assert dry[2] == "FAIL"
    assert "ec2:RunInstances" in dry[3] and "iam:PassRole" in dry[3]
    assert "docs/iam-policy.json" in dry[3]
    assert rows[("A", "imageId")][2] == "ok"
    assert re.search(r"^\[\d+/\d+\] template A: DryRun RunInstances: FAIL: not permitted",
                     proc.stderr, re.M)


def test_a_describe_that_is_refused_fails_the_field_it_checks(site: HostFactory) -> None:
    site.server.faults.deny("DescribeSubnets")
    proc = site.cli("validate", "--aws", "--json")
    assert proc.returncode == 1
    failed = [c for c in json.loads(proc.stdout)["checks"] if not c["ok"]]
    assert [(c["template"], c["check"]) for c in failed] == [("Plain", "subnetId")]
    assert failed[0]["detail"].startswith("could not check: UnauthorizedOperation")


def test_invalid_files_stop_before_any_aws_call(site: HostFactory) -> None:
    site.write_templates([site.template("A", maxNumber="lots")])
    proc = site.cli("validate", "--aws")
    assert proc.returncode == 1
    assert "template 'A': maxNumber" in proc.stdout
    assert site.server.calls() == {}


def test_unreachable_aws_is_one_line_not_a_wall_of_fails(site: HostFactory) -> None:
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    site.write_config(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    proc = site.cli("validate", "--aws")
    assert proc.returncode == 1
    assert proc.stdout == ""
    last = lines(proc.stderr)[-1]
    assert last.startswith("hostfactory-aws validate: DescribeImages failed: "
                           "EndpointConnectionError"), last
    assert "check AWS_ENDPOINT_URL" in last
