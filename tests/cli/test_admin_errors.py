"""Errors an admin meets: always in the log, one line naming the fix, one stop per cause."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from hostfactory_aws import __version__
from hostfactory_aws.admin import check_aws
from hostfactory_aws.errors import AwsError
from tests.support.hostfactory import PROVIDER, SCRIPTS, HostFactory


def test_a_failure_reaches_the_log_at_log_level_warn(site: HostFactory) -> None:
    site.write_config(LogLevel="WARN")
    code, answer = site.call("requestMachines", {"template": {"templateId": "Nope",
                                                                "machineCount": 1}})
    assert code == 1
    log = site.log_text()
    assert "ERROR" in log and "requestMachines" in log and "FAILED" in log
    assert f"(v{__version__})" in log and "Nope" in log
    ok_code, _ = site.call("getAvailableTemplates", {})
    assert ok_code == 0
    assert site.log_text().count("getAvailableTemplates") == 0  # INFO stays off at WARN


def test_the_call_record_carries_the_version(site: HostFactory) -> None:
    site.ok("getAvailableTemplates", {})
    line = [x for x in site.log_text().splitlines() if "getAvailableTemplates" in x][-1]
    assert "-> ok in" in line and f"(v{__version__})" in line


def _templates_with_dir_under_a_file(site: HostFactory, variable: str,
                                     name: str) -> tuple[Any, subprocess.CompletedProcess]:
    """getAvailableTemplates.sh with ``variable`` naming a dir that cannot be made (its
    parent is a file); returns (that file, the finished script)."""
    blocker = site.root / "a-file"
    blocker.write_text("not a dir")
    site.env[variable] = str(blocker / name)
    path = site.root / "in.json"
    path.write_text("{}")
    return blocker, subprocess.run([str(SCRIPTS / "getAvailableTemplates.sh"), "-f", str(path)],
                                   capture_output=True, text=True, env=site.env, cwd=site.cwd,
                                   timeout=60)


def test_an_unwritable_log_dir_still_answers_and_says_in_one_line_what_to_fix(
        site: HostFactory) -> None:
    """The log is for people; HostFactory needs the answer. With no log dir the verb answers,
    and its log lines go to stderr, the first naming the dir and the variable to fix."""
    blocker, proc = _templates_with_dir_under_a_file(site, "HF_PROVIDER_LOGDIR", "log")
    assert proc.returncode == 0, proc.stdout
    assert json.loads(proc.stdout)["templates"]
    first = proc.stderr.splitlines()[0]
    assert str(blocker / "log") in first and "HF_PROVIDER_LOGDIR" in first
    assert "Traceback" not in proc.stderr


def test_an_unwritable_work_dir_is_one_line_naming_it(site: HostFactory) -> None:
    blocker, proc = _templates_with_dir_under_a_file(site, "HF_PROVIDER_WORKDIR", "work")
    assert proc.returncode == 1
    message = json.loads(proc.stdout)["message"]
    assert str(blocker / "work") in message and "HF_PROVIDER_WORKDIR" in message
    assert "\n" not in message and "internal error" not in message
    assert "Traceback" not in proc.stderr


def test_validate_aws_stops_at_the_first_credentials_failure(site: HostFactory) -> None:
    site.write_templates([site.template(f"T{i}") for i in range(6)])
    env = {k: "" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                           "AWS_SECURITY_TOKEN")}
    proc = site.cli("validate", "--aws", env=env)
    assert proc.returncode == 1
    errors = [x for x in proc.stderr.splitlines() if x.startswith("hostfactory-aws validate")]
    assert len(errors) == 1 and "credentials" in errors[0]
    assert "FAIL" not in proc.stdout  # no table of the same error per template
    assert site.server.calls() == {}


def test_credential_and_endpoint_failures_stop_the_checks() -> None:
    assert check_aws.stop_here(AwsError("DescribeImages", "AuthFailure", "bad", "fatal"))
    assert check_aws.stop_here(AwsError("DescribeImages", "EndpointConnectionError", "x",
                                        "unknown"))
    assert not check_aws.stop_here(AwsError("RunInstances", "UnauthorizedOperation", "no",
                                            "fatal"))


def test_orphans_exits_non_zero_when_it_finds_some(site: HostFactory) -> None:
    ec2 = site.server.ec2
    ec2.run_instances(ImageId=site.image_id, MinCount=1, MaxCount=1, InstanceType="m5.large",
                      TagSpecifications=[{"ResourceType": "instance", "Tags": [
                          {"Key": "hostfactory:provider", "Value": PROVIDER}]}])
    proc = site.cli("orphans")
    assert proc.returncode == 1 and "INSTANCE" in proc.stdout
