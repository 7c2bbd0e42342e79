"""``hostfactory-aws iam-policy``: the generated policy is least privilege for ITS templates.

docs/iam-policy.json is the generator's output for the shipped sample conf (test_iam_policy.py
keeps it equal to the calls the code makes); here the policy is parsed as IAM would read it:
no PassRole on ``*``, creation only with this provider's tag in the request, changes only to
resources carrying it, SSM only on the image paths in use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hostfactory_aws.admin import iam_policy
from hostfactory_aws.templates import load_templates

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "conf" / "awsprov_templates.json"
CONFIG = {"AWS_REGION": "us-east-1"}
CREATES = {"ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate",
           "ec2:RequestSpotFleet", "autoscaling:CreateAutoScalingGroup"}
# resource types the plugin tags in the create call itself
TAGGED = ("instance/", "volume/", "fleet/", "spot-fleet-request/", "spot-instances-request/")


def _sample() -> list[dict[str, Any]]:
    return load_templates(str(SAMPLE))


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for st in policy["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        out.append({**st, "Action": actions, "Resource": res})
    return out


def _grants(policy: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [st for st in _statements(policy) if action in st["Action"]]


def test_docs_policy_is_the_generators_output_for_the_sample_conf() -> None:
    generated = iam_policy.policy(json.loads((ROOT / "conf" / "awsprov_config.json")
                                             .read_text()), _sample(), "aws")
    assert json.loads((ROOT / "docs" / "iam-policy.json").read_text()) == generated, (
        "regenerate: HF_PROVIDER_CONFDIR=conf hostfactory-aws iam-policy > "
        "docs/iam-policy.json")


def test_pass_role_only_on_the_roles_the_templates_name() -> None:
    policy = iam_policy.policy(CONFIG, _sample(), "grid1")
    grants = _grants(policy, "iam:PassRole")
    assert grants, "the sample names an instance profile and a Spot Fleet role"
    resources = {r for st in grants for r in st["Resource"]}
    assert "*" not in resources
    assert resources == {"arn:aws:iam::*:role/symphony-compute",
                         "arn:aws:iam::*:role/*/symphony-compute",
                         "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role"}
    services = {st["Condition"]["StringEquals"]["iam:PassedToService"] for st in grants}
    assert services == {"ec2.amazonaws.com", "spotfleet.amazonaws.com"}


def test_pass_role_uses_the_roles_iam_named_when_asked() -> None:
    profiles = {"symphony-compute": ["arn:aws:iam::1:role/grid/compute-role"]}
    policy = iam_policy.policy(CONFIG, _sample(), "grid1", profiles)
    ec2_grant = [st for st in _grants(policy, "iam:PassRole")
                 if st["Condition"]["StringEquals"]["iam:PassedToService"] ==
                 "ec2.amazonaws.com"]
    assert ec2_grant[0]["Resource"] == ["arn:aws:iam::1:role/grid/compute-role"]


def test_creates_need_this_providers_tag_in_the_request() -> None:
    policy = iam_policy.policy(CONFIG, _sample(), "grid1")
    for action in CREATES:
        created = [st for st in _grants(policy, action)
                   if any(any(t in r for t in TAGGED + ("launch-template/",)) or r == "*"
                          for r in st["Resource"])
                   and st.get("Condition", {}).get("StringEquals", {})
                   .get("aws:RequestTag/hostfactory:provider") == "grid1"]
        assert created, f"{action}: no grant conditioned on this provider's request tag"
    # Unconditioned grants name only what a launch uses (subnets, images, key pairs...):
    # never a type the plugin creates and tags, never '*'.
    for st in _statements(policy):
        if st.get("Condition") or not set(st["Action"]) & CREATES:
            continue
        for r in st["Resource"]:
            assert r != "*" and not any(t in r for t in TAGGED), (st["Sid"], r)


def test_tagging_only_in_the_create_call_or_on_this_providers_resources() -> None:
    policy = iam_policy.policy(CONFIG, _sample(), "grid1")
    for st in _grants(policy, "ec2:CreateTags"):
        cond = st["Condition"]["StringEquals"]
        assert (cond.get("aws:ResourceTag/hostfactory:provider") == "grid1"
                or (cond.get("ec2:CreateAction")
                    and cond.get("aws:RequestTag/hostfactory:provider") == "grid1")), st


def test_changes_need_this_providers_tag_on_the_resource() -> None:
    policy = iam_policy.policy(CONFIG, _sample(), "grid1")
    for action in iam_policy.EC2_CHANGES + iam_policy.ASG_CHANGES:
        for st in _grants(policy, action):
            cond = st["Condition"]["StringEquals"]
            assert "grid1" in (cond.get("aws:ResourceTag/hostfactory:provider"),
                               cond.get("autoscaling:ResourceTag/hostfactory:provider"),
                               cond.get("aws:RequestTag/hostfactory:provider")), st


def test_ssm_only_on_the_image_paths_in_use() -> None:
    templates = _sample()
    policy = iam_policy.policy(CONFIG, templates, "grid1")
    (st,) = _grants(policy, "ssm:GetParameter")
    assert st["Resource"] == ["arn:aws:ssm:us-east-1::parameter/aws/service/"
                              "ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"]
    plain = [t for t in templates if not str(t.get("imageId", "")).startswith("/")]
    assert not _grants(iam_policy.policy(CONFIG, plain, "grid1"), "ssm:GetParameter")


def test_a_run_instances_only_grid_gets_no_fleet_rights() -> None:
    ri = [t for t in _sample() if t["providerApi"] == "RunInstances"]
    policy = iam_policy.policy({"AWS_REGION": "cn-north-1"}, ri, "grid1")
    granted = {a for st in _statements(policy) for a in st["Action"]}
    assert not granted & {"ec2:CreateFleet", "ec2:RequestSpotFleet", "ec2:CreateLaunchTemplate",
                          "autoscaling:CreateAutoScalingGroup", "iam:CreateServiceLinkedRole",
                          "ssm:GetParameter"}
    text = json.dumps(policy)
    assert "arn:aws-cn:ec2:cn-north-1:" in text and "arn:aws:" not in text
    used = _grants(policy, "ec2:RunInstances")
    assert "arn:aws-cn:ec2:cn-north-1:*:subnet/subnet-0123456789abcdef0" in used[1]["Resource"]


@pytest.mark.parametrize("api, service", [("EC2Fleet", "ec2fleet.amazonaws.com"),
                                          ("SpotFleet", "spotfleet.amazonaws.com"),
                                          ("ASG", "autoscaling.amazonaws.com")])
def test_service_linked_roles_only_for_the_apis_in_use(api: str, service: str) -> None:
    templates = [t for t in _sample() if t["providerApi"] == api]
    (st,) = _grants(iam_policy.policy(CONFIG, templates, "g"), "iam:CreateServiceLinkedRole")
    assert service in st["Condition"]["StringEquals"]["iam:AWSServiceName"]
    assert all(r.startswith("arn:aws:iam::*:role/aws-service-role/") for r in st["Resource"])


def test_the_command_prints_the_policy_for_the_conf_in_use(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
           "HF_PROVIDER_NAME": "grid7", "HF_PROVIDER_CONFDIR": str(ROOT / "conf"),
           "HF_PROVIDER_WORKDIR": str(tmp_path / "work"),
           "HF_PROVIDER_LOGDIR": str(tmp_path / "log")}
    proc = subprocess.run([sys.executable, "-m", "hostfactory_aws", "iam-policy"], env=env,
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed == iam_policy.policy(json.loads((ROOT / "conf" / "awsprov_config.json")
                                                   .read_text()), _sample(), "grid7")
    assert "grid7" in proc.stdout and '"aws"' not in proc.stdout


def test_an_admins_template_on_an_asynchronous_api_may_get_tagged_versions() -> None:
    lt = "lt-0123456789abcdef0"
    async_lt = {"templateId": "G", "providerApi": "ASG", "launchTemplateId": lt}
    instant_lt = {"templateId": "I", "providerApi": "EC2Fleet", "fleetType": "instant",
                  "launchTemplateId": "lt-0fedcba9876543210"}
    policy = iam_policy.policy(CONFIG, [async_lt, instant_lt], "grid1")
    (st,) = [s for s in policy["Statement"]
             if s["Sid"] == "TaggedVersionsOfTheAdminsLaunchTemplates"]
    assert st["Action"] == ["ec2:CreateLaunchTemplateVersion",
                            "ec2:DeleteLaunchTemplateVersions"]
    assert st["Resource"] == [f"arn:aws:ec2:us-east-1:*:launch-template/{lt}"]
    plain = iam_policy.policy(CONFIG, [instant_lt], "grid1")
    assert "TaggedVersionsOfTheAdminsLaunchTemplates" not in {s["Sid"] for s in
                                                              plain["Statement"]}


def test_key_pairs_are_granted_only_with_aws_key_file() -> None:
    """IBM's AWS_KEY_FILE imports or creates missing key pairs; without it, no such grant."""
    assert not _grants(iam_policy.policy(CONFIG, _sample(), "grid1"), "ec2:ImportKeyPair")
    policy = iam_policy.policy({**CONFIG, "AWS_KEY_FILE": "/etc/keys"}, _sample(), "grid1")
    for action in ("ec2:ImportKeyPair", "ec2:CreateKeyPair"):
        grants = _grants(policy, action)
        assert grants and all(r.endswith(":key-pair/*") for st in grants
                              for r in ([st["Resource"]] if isinstance(st["Resource"], str)
                                        else st["Resource"]))
