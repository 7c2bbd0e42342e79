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


def test_unknown_key_is_kept_aside_with_suggestion_not_fatal() -> None:
    cfg = parse(AWS_INSTANCE_PENDING_TIMEOUT=100)
    assert cfg["AWS_INSTANCE_PENDING_TIMEOUT_SEC"] == 180
    assert cfg["_unknown"] == [f"{PATH}: unknown field 'AWS_INSTANCE_PENDING_TIMEOUT' "
                               "(did you mean 'AWS_INSTANCE_PENDING_TIMEOUT_SEC'?)"]
    assert config.problems(cfg) == cfg["_unknown"]


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
                                            "AWS_ENDPOINT_URL": "local host:5000"})


def test_endpoint_without_protocol_is_https_as_ibm_reads_it() -> None:
    cfg = parse(AWS_ENDPOINT_URL="ec2.us-west-1.amazonaws.com:443")
    assert cfg["AWS_ENDPOINT_URL"] == "https://ec2.us-west-1.amazonaws.com:443"


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


# -- IBM's keys (issue 13) -------------------------------------------------------------------

SYMPHONY_LINUX = {  # IBM's documented Linux example, unchanged
    "ACCEPT_PROPAGATED_LOG_SETTING": "false", "AWS_CREDENTIAL_FILE": "/home/aws/credentials",
    "AWS_KEY_FILE": "/home/aws/", "AWS_REGION": "us-east-1", "AWS_PROXY_HOST": "proxyhost",
    "AWS_PROXY_PORT": 80, "AWS_CONNECTION_TIMEOUT_MS": 10000, "AWS_REQUEST_RETRY_ATTEMPTS": 0}


def test_ibm_symphony_example_loads_with_every_key() -> None:
    cfg = config.parse_config(dict(SYMPHONY_LINUX), PATH)
    assert cfg["_unknown"] == []
    assert cfg["ACCEPT_PROPAGATED_LOG_SETTING"] is False
    assert (cfg["AWS_PROXY_HOST"], cfg["AWS_PROXY_PORT"]) == ("proxyhost", 80)
    assert cfg["AWS_REQUEST_RETRY_ATTEMPTS"] == 0 and cfg["AWS_KEY_FILE"] == "/home/aws/"


def test_empty_proxy_host_means_no_proxy() -> None:
    cfg = parse(AWS_PROXY_HOST="", AWS_PROXY_PORT=80, AWS_ENDPOINT_URL="",
                AWS_CREDENTIAL_SCRIPT="", AWS_CREDENTIAL_RENEW_MARGIN="")
    assert "AWS_PROXY_HOST" not in cfg and "AWS_ENDPOINT_URL" not in cfg
    assert "AWS_CREDENTIAL_SCRIPT" not in cfg and cfg["AWS_CREDENTIAL_RENEW_MARGIN"] == 1770


def test_lsf_keys_with_ibm_meanings() -> None:
    cfg = parse(AWS_CREDENTIAL_SCRIPT="/opt/creds.sh", AWS_CREDENTIAL_RENEW_MARGIN="600",
                AWS_TAG_InstanceID="true", INSTANCE_CREATION_TIMEOUT=15,
                AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS=3, AWS_DESCRIBE_REQUEST_INTERVAL=200)
    assert cfg["_unknown"] == []
    assert cfg["AWS_CREDENTIAL_RENEW_MARGIN"] == 600 and cfg["AWS_TAG_InstanceID"] is True
    assert cfg["AWS_ORPHAN_TIMEOUT_MINUTES"] == 15  # IBM's orphan rule
    assert parse(INSTANCE_CREATION_TIMEOUT=15,
                 AWS_ORPHAN_TIMEOUT_MINUTES=0)["AWS_ORPHAN_TIMEOUT_MINUTES"] == 0


@pytest.mark.parametrize("given, level", [("TRACE", "DEBUG"), ("trace", "DEBUG"),
                                          ("FATAL", "CRITICAL"), ("Info", "INFO"),
                                          ("ALL", "DEBUG"), ("off", "CRITICAL")])
def test_every_log4j_level(given: str, level: str) -> None:
    assert parse(LogLevel=given)["LogLevel"] == level


def test_accept_propagated_log_setting_takes_hostfactory_level() -> None:
    raw = {"AWS_REGION": "us-east-1", "LogLevel": "INFO", "ACCEPT_PROPAGATED_LOG_SETTING": True}
    assert config.parse_config(raw, PATH, env={"HF_LOGLEVEL": "LOG_DEBUG"})["LogLevel"] == "DEBUG"
    raw["ACCEPT_PROPAGATED_LOG_SETTING"] = "false"
    assert config.parse_config(raw, PATH, env={"HF_LOGLEVEL": "LOG_DEBUG"})["LogLevel"] == "INFO"


def test_unknown_keys_are_logged_on_every_load(tmp_path: Any, caplog: Any) -> None:
    path = tmp_path / "awsprov_config.json"
    path.write_text(json.dumps({"AWS_REGION": "us-east-1", "AWS_PROXY_HOTS": "p"}))
    for _ in range(2):
        config.load_config(str(path), str(tmp_path / "validated.json"), env={})
    warned = [r for r in caplog.records if "AWS_PROXY_HOTS" in r.getMessage()]
    assert len(warned) == 2 and "did you mean 'AWS_PROXY_HOST'?" in warned[0].getMessage()
