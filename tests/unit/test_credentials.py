"""cloud/credentials.py: IBM's AWS_CREDENTIAL_SCRIPT, both output forms, renewed in time."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from hostfactory_aws.cloud import credentials
from hostfactory_aws.errors import ConfigError

JSON_FORM = {"AccessKeyId": "AKIAJSON", "SecretAccessKey": "s3cret", "SessionToken": "tok",
             "Expiration": "2030-01-01T00:00:00Z"}
INI_FORM = "[default]\naws_access_key_id=AKIAINI\naws_secret_access_key=ini-secret\n" \
           "aws_session_token=ini-token\n"


def test_awsv2_json_form() -> None:
    got = credentials.parse_output(json.dumps(JSON_FORM), "s.sh")
    assert got == {"access_key": "AKIAJSON", "secret_key": "s3cret", "token": "tok",
                   "expiry_time": "2030-01-01T00:00:00Z"}
    wrapped = credentials.parse_output(json.dumps({"Credentials": JSON_FORM}), "s.sh")
    assert wrapped == got


def test_java_plugin_credentials_file_form() -> None:
    got = credentials.parse_output(INI_FORM, "s.sh")
    assert (got["access_key"], got["secret_key"], got["token"]) == (
        "AKIAINI", "ini-secret", "ini-token")


@pytest.mark.parametrize("text", ['{"AccessKeyId": "x"}', "[default]\nfoo=bar\n", "{oops"])
def test_bad_output_names_the_script(text: str) -> None:
    with pytest.raises(ConfigError, match="AWS_CREDENTIAL_SCRIPT s.sh"):
        credentials.parse_output(text, "s.sh")


def test_renewal_is_the_earlier_of_expiration_and_margin() -> None:
    issued = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    assert credentials.expiry(issued, "", 1770) == "2030-01-01T00:29:30+00:00"
    assert credentials.expiry(issued, "2030-01-01T00:10:00Z", 1770) == (
        "2030-01-01T00:10:00+00:00")


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "creds.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_session_gets_refreshed_credentials(tmp_path: Path) -> None:
    import boto3

    runs = tmp_path / "runs"
    script = _script(tmp_path, f'echo run >> {runs}\n'
                               'n=$(wc -l < ' + str(runs) + ')\n'
                               'printf \'{"AccessKeyId": "AKIA%s", "SecretAccessKey": "s", '
                               '"SessionToken": "t"}\' "$n"\n')
    session: Any = boto3.session.Session(region_name="us-east-1")
    cfg = {"AWS_CREDENTIAL_SCRIPT": script, "AWS_CREDENTIAL_RENEW_MARGIN": 300}
    credentials.attach(session, cfg)
    first = session.get_credentials().get_frozen_credentials().access_key
    second = session.get_credentials().get_frozen_credentials().access_key
    # 5 minutes left is inside botocore's mandatory refresh window: renewed on each use
    assert first.startswith("AKIA") and second != first
    cfg["AWS_CREDENTIAL_RENEW_MARGIN"] = 3600
    session = boto3.session.Session(region_name="us-east-1")
    credentials.attach(session, cfg)
    a = session.get_credentials().get_frozen_credentials().access_key
    assert session.get_credentials().get_frozen_credentials().access_key == a


def test_failing_script_is_a_config_error(tmp_path: Path) -> None:
    import boto3

    script = _script(tmp_path, "echo denied >&2\nexit 3\n")
    with pytest.raises(ConfigError, match="exit 3: denied"):
        credentials.attach(boto3.session.Session(region_name="us-east-1"),
                           {"AWS_CREDENTIAL_SCRIPT": script})
