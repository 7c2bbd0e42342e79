"""config.py: awsprov_config.json, IBM's key names, defaults and messages that name the key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hostfactory_aws import config
from hostfactory_aws.errors import ConfigError

PATH = "/opt/hf/conf/awsprov_config.json"


def parse(**keys: Any) -> dict[str, Any]:
    return config.parse_config({"AWS_REGION": "us-east-1", **keys}, PATH)


def error_of(raw: Any) -> str:
    with pytest.raises(ConfigError) as exc:
        config.parse_config(raw, PATH)
    msg = str(exc.value)
    assert PATH in msg
    return msg


def test_defaults() -> None:
    cfg = parse()
    assert cfg["AWS_REGION"] == "us-east-1"
    assert cfg["AWS_INSTANCE_PENDING_TIMEOUT_SEC"] == 180
    assert cfg["AWS_SPOT_TERMINATE_ON_RECLAIM"] is False
    assert cfg["AWS_CONNECTION_TIMEOUT_MS"] == 10000
    assert cfg["AWS_REQUEST_RETRY_ATTEMPTS"] == 4
    assert cfg["STATE_LOCK_TIMEOUT_SEC"] == 30
    assert cfg["REQUEST_RETENTION_HOURS"] == 24
    assert cfg["LogLevel"] == "INFO"
    assert "AWS_PROFILE" not in cfg and "AWS_ENDPOINT_URL" not in cfg


def test_admin_values_override_defaults() -> None:
    cfg = parse(AWS_INSTANCE_PENDING_TIMEOUT_SEC=600, AWS_PROFILE="grid",
                AWS_ENDPOINT_URL="http://127.0.0.1:5000")
    assert cfg["AWS_INSTANCE_PENDING_TIMEOUT_SEC"] == 600
    assert cfg["AWS_PROFILE"] == "grid"
    assert cfg["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5000"


def test_numeric_strings_are_accepted() -> None:
    cfg = parse(AWS_INSTANCE_PENDING_TIMEOUT_SEC="300", AWS_CONNECTION_TIMEOUT_MS=" 5000 ",
                AWS_PROXY_PORT="3128", AWS_PROXY_HOST="proxy.local")
    assert cfg["AWS_INSTANCE_PENDING_TIMEOUT_SEC"] == 300
    assert cfg["AWS_CONNECTION_TIMEOUT_MS"] == 5000
    assert cfg["AWS_PROXY_PORT"] == 3128


def test_non_numeric_string_is_named() -> None:
    msg = error_of({"AWS_REGION": "us-east-1", "AWS_INSTANCE_PENDING_TIMEOUT_SEC": "soon"})
    assert "AWS_INSTANCE_PENDING_TIMEOUT_SEC:" in msg


@pytest.mark.parametrize("text, value", [("true", True), ("True", True), ("FALSE", False),
                                         ("false", False), (True, True), (False, False)])
def test_spot_terminate_on_reclaim_bool_strings(text: Any, value: bool) -> None:
    assert parse(AWS_SPOT_TERMINATE_ON_RECLAIM=text)["AWS_SPOT_TERMINATE_ON_RECLAIM"] is value


def test_spot_terminate_on_reclaim_other_text_is_rejected() -> None:
    msg = error_of({"AWS_REGION": "us-east-1", "AWS_SPOT_TERMINATE_ON_RECLAIM": "yes"})
    assert "AWS_SPOT_TERMINATE_ON_RECLAIM:" in msg


def test_unknown_key_is_named_with_suggestion() -> None:
    msg = error_of({"AWS_REGION": "us-east-1", "AWS_INSTANCE_PENDING_TIMEOUT": 100})
    assert "unknown field 'AWS_INSTANCE_PENDING_TIMEOUT'" in msg
    assert "did you mean 'AWS_INSTANCE_PENDING_TIMEOUT_SEC'?" in msg


def test_misspelt_region_key() -> None:
    msg = error_of({"AWS_REGON": "us-east-1"})
    assert "unknown field 'AWS_REGON' (did you mean 'AWS_REGION'?)" in msg
    assert "'AWS_REGION' is required" in msg


def test_missing_region() -> None:
    assert "'AWS_REGION' is required" in error_of({"LogLevel": "INFO"})


@pytest.mark.parametrize("region", ["US East", "useast1", "us-east", ""])
def test_bad_region(region: str) -> None:
    assert "AWS_REGION:" in error_of({"AWS_REGION": region})


@pytest.mark.parametrize("region", ["eu-west-1", "ap-southeast-2", "us-gov-west-1"])
def test_good_regions(region: str) -> None:
    assert config.parse_config({"AWS_REGION": region}, PATH)["AWS_REGION"] == region


@pytest.mark.parametrize("given, level", [("WARN", "WARNING"), ("warn", "WARNING"),
                                          ("debug", "DEBUG"), ("ERROR", "ERROR")])
def test_log_level(given: str, level: str) -> None:
    assert parse(LogLevel=given)["LogLevel"] == level


def test_bad_log_level() -> None:
    assert "LogLevel:" in error_of({"AWS_REGION": "us-east-1", "LogLevel": "LOUD"})


def test_endpoint_must_be_a_url() -> None:
    assert "AWS_ENDPOINT_URL:" in error_of({"AWS_REGION": "us-east-1",
                                            "AWS_ENDPOINT_URL": "localhost:5000"})


def test_retry_attempts_bounds() -> None:
    assert "AWS_REQUEST_RETRY_ATTEMPTS:" in error_of({"AWS_REGION": "us-east-1",
                                                      "AWS_REQUEST_RETRY_ATTEMPTS": 99})


def test_not_an_object() -> None:
    error_of(["AWS_REGION", "us-east-1"])


def test_load_config_from_file(tmp_path: Any) -> None:
    path = tmp_path / "awsprov_config.json"
    path.write_text(json.dumps({"AWS_REGION": "eu-west-1", "LogLevel": "WARN"}))
    cfg = config.load_config(str(path))
    assert (cfg["AWS_REGION"], cfg["LogLevel"]) == ("eu-west-1", "WARNING")


def test_load_config_bad_json_names_file(tmp_path: Any) -> None:
    path = tmp_path / "awsprov_config.json"
    path.write_text('{"AWS_REGION": "us-east-1",}')
    with pytest.raises(ConfigError, match="not valid JSON") as exc:
        config.load_config(str(path))
    assert str(path) in str(exc.value)
