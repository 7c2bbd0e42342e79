"""``hostfactory-aws doctor``: one OK/FAIL line per check, FAIL says what to fix, exit 1."""

from __future__ import annotations

import json
import re
import socket
from typing import Any

from tests.support.hostfactory import ACCOUNT, PROVIDER, HostFactory, lines


def _by_check(stdout: str) -> dict[str, str]:
    out = {}
    for line in lines(stdout)[:-1]:
        m = re.match(r"^(OK|FAIL|SKIP|WARN) +([a-z0-9 ]+): (.*)$", line)
        assert m, f"not a check line: {line!r}"
        out[m.group(2)] = f"{m.group(1)} {m.group(3)}"
    return out


def test_healthy_install(site: HostFactory) -> None:
    proc = site.cli("doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = _by_check(proc.stdout)
    assert all(v.startswith("OK ") for v in checks.values()), checks
    assert checks["provider"].startswith(f"OK '{PROVIDER}' (from $HF_PROVIDER_NAME), mode "
                                         "symphony")
    assert checks["conf dir"] == f"OK {site.conf_dir} (from $HF_PROVIDER_CONFDIR)"
    assert checks["work dir"].startswith(f"OK {site.work_dir} (from $HF_PROVIDER_WORKDIR)")
    assert checks["log dir"].startswith(f"OK {site.log_dir} (from $HF_PROVIDER_LOGDIR)")
    assert checks["config file"].startswith(f"OK {site.config_path} (no {PROVIDER}prov_")
    assert "1 templates (Plain)" in checks["templates file"]
    assert f"HF_PROVIDER_WORKDIR={site.work_dir}" in checks["environment"]
    assert "AWS_SECRET_ACCESS_KEY=(set)" in checks["environment"]
    assert "testing" not in checks["environment"], "a secret was printed"
    assert checks["region"] == f"OK us-east-1, endpoint {site.server.url}"
    assert checks["credentials"] == "OK from env"
    assert checks["identity"].startswith(f"OK account {ACCOUNT}, arn:aws:sts::{ACCOUNT}:")
    assert checks["ec2"].startswith("OK DescribeInstances answered: 0 instances")
    for name in ("python", "boto3", "botocore", "jsonschema"):
        assert checks[name].startswith("OK "), name
    assert lines(proc.stdout)[-1].endswith(", 0 failed")
    calls = site.server.calls()
    assert calls.get("GetCallerIdentity") == 1 and calls.get("DescribeInstances") == 1
    assert "asg quota" not in checks and "DescribeAccountLimits" not in calls  # no ASG template


def test_unwritable_work_dir_fails_with_a_fix(site: HostFactory) -> None:
    blocker = site.root / "not-a-dir"
    blocker.write_text("a file where the work dir should be")
    proc = site.cli("doctor", env={"HF_PROVIDER_WORKDIR": str(blocker / "work")})
    assert proc.returncode == 1
    checks = _by_check(proc.stdout)
    assert checks["work dir"].startswith(f"FAIL {blocker / 'work'} (from $HF_PROVIDER_WORKDIR)"
                                         ": not writable")
    assert "-> fix: make it writable by user" in checks["work dir"]
    assert "set HF_PROVIDER_WORKDIR" in checks["work dir"]
    assert checks["log dir"].startswith("OK ")
    assert lines(proc.stdout)[-1].endswith(", 1 failed")


def test_unreachable_endpoint_fails_ec2_only(site: HostFactory) -> None:
    """AWS_ENDPOINT_URL is EC2's endpoint (IBM's meaning); STS keeps its own (here moto's,
    through botocore's AWS_ENDPOINT_URL_STS)."""
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    site.write_config(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
                      AWS_CONNECTION_TIMEOUT_MS=2000)
    proc = site.cli("doctor", "--json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False
    by = {c["check"]: c for c in doc["checks"]}
    assert by["ec2"]["status"] == "FAIL", by["ec2"]
    assert "AWS_ENDPOINT_URL" in by["ec2"]["fix"]
    assert by["identity"]["status"] == "OK", by["identity"]
    assert by["config file"]["status"] == "OK"
    assert [c["check"] for c in doc["checks"] if c["status"] == "FAIL"] == ["ec2"]


def _doctor_with_typo(site: HostFactory, config: dict[str, Any]) -> dict[str, str]:
    """doctor over a config with the misspelt LogLevl: exit 1, the key named with a hint."""
    site.config_path.write_text(json.dumps({**config, "LogLevl": "INFO"}))
    proc = site.cli("doctor")
    assert proc.returncode == 1
    checks = _by_check(proc.stdout)
    assert checks["config file"].startswith("FAIL ")
    assert "unknown field 'LogLevl' (did you mean 'LogLevel'?)" in checks["config file"]
    assert "hostfactory-aws validate" in checks["config file"]
    return checks


def test_invalid_config_fails_and_skips_the_aws_checks(site: HostFactory) -> None:
    checks = _doctor_with_typo(site, {})
    assert "'AWS_REGION' is required" in checks["config file"]
    assert checks["identity"].startswith("SKIP ")
    assert site.server.calls() == {}


def test_unknown_config_key_is_reported_but_not_fatal_to_the_checks(site: HostFactory) -> None:
    """Issue 13: the verbs run with an unknown key, so doctor reports it and goes on."""
    checks = _doctor_with_typo(site, json.loads(site.config_path.read_text()))
    assert checks["identity"].startswith("OK ")


def test_lsf_install_is_recognised(lsf_site: HostFactory) -> None:
    proc = lsf_site.cli("doctor")
    assert proc.returncode == 0, proc.stdout
    checks = _by_check(proc.stdout)
    assert checks["provider"] == (f"OK '{PROVIDER}' (from $PROVIDER_NAME), mode lsf, "
                                  "memory attribute 'mem'")
    assert checks["conf dir"] == f"OK {lsf_site.conf_dir} (from $PRO_CONF_DIR/conf)"
    assert checks["work dir"].startswith(f"OK {lsf_site.work_dir} (from $PRO_DATA_DIR)")
    assert checks["log dir"].startswith(f"OK {lsf_site.log_dir} (from $PRO_LSF_LOGDIR)")
    assert f"PRO_CONF_DIR={lsf_site.root / 'pro'}" in checks["environment"]


def _groups_in_use(site: HostFactory, used: int, quota: int) -> None:
    """``used`` Auto Scaling groups in an account whose quota is ``quota``."""
    from moto.autoscaling.models import autoscaling_backends

    from tests.support.server import REGION

    autoscaling_backends[ACCOUNT][REGION].hf_max_groups = quota
    client = site.server.client("autoscaling")
    client.create_launch_configuration(LaunchConfigurationName="lc", ImageId=site.image_id,
                                       InstanceType="m5.large")
    for i in range(used):
        client.create_auto_scaling_group(AutoScalingGroupName=f"other-{i}", MinSize=0,
                                         MaxSize=0, LaunchConfigurationName="lc",
                                         AvailabilityZones=["us-east-1a"])


def test_asg_quota_warns_when_fewer_groups_remain_than_templates_could_need(
        site: HostFactory) -> None:
    site.write_templates([site.template("Plain"),
                          site.template("Groups", providerApi="ASG", maxNumber=4)])
    _groups_in_use(site, used=2, quota=5)
    proc = site.cli("doctor")
    assert proc.returncode == 0, proc.stdout  # launches still work: act soon, not now
    checks = _by_check(proc.stdout)
    assert checks["asg quota"].startswith(
        "WARN 2 of 5 Auto Scaling groups in use, 3 free; templates Groups make one group per "
        "request (up to 4): few groups left -> fix: "), checks["asg quota"]
    assert "raise the quota 'Auto Scaling groups per region'" in checks["asg quota"]
    assert lines(proc.stdout)[-1].endswith(", 1 to act on soon, 0 failed")
    assert site.server.calls().get("DescribeAccountLimits") == 1


def test_asg_quota_fails_when_no_group_can_be_made_and_passes_with_room(
        site: HostFactory) -> None:
    site.write_templates([site.template("Groups", providerApi="ASG", maxNumber=2)])
    _groups_in_use(site, used=3, quota=3)
    proc = site.cli("doctor", "--json")
    assert proc.returncode == 1
    by = {c["check"]: c for c in json.loads(proc.stdout)["checks"]}
    assert by["asg quota"]["status"] == "FAIL", by["asg quota"]
    assert "3 of 3" in by["asg quota"]["detail"]
    assert "requestMachines with these templates fails" in by["asg quota"]["detail"]

    from moto.autoscaling.models import autoscaling_backends

    from tests.support.server import REGION

    autoscaling_backends[ACCOUNT][REGION].hf_max_groups = 500  # AWS's default quota
    checks = _by_check(site.cli("doctor").stdout)
    assert checks["asg quota"] == ("OK 3 of 500 Auto Scaling groups in use, 497 free; "
                                   "templates Groups make one group per request (up to 2)")
