"""One botocore session per process, clients made on first use, and the AWS error table.

botocore is imported here only, and only when a verb really needs AWS: getAvailableTemplates
with complete attributes never pays for it. boto3 adds nothing the plugin uses (no
resources), so clients come from botocore directly; with a work dir, they read the lean
service models of service_models.py (botocore's own, cut to the operations we call).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, Callable, Iterator

from hostfactory_aws.errors import AwsError

log = logging.getLogger(__name__)

# What a caller may conclude from a failed call. Throttling is retried by botocore's
# standard mode before it ever reaches us; what is left is reported, never guessed away.
CAPACITY_CODES = frozenset({
    "InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity", "InsufficientFreeAddressesInSubnet",
    "MaxSpotInstanceCountExceeded", "MaxSpotFleetRequestCountExceeded",
    "VcpuLimitExceeded", "InstanceLimitExceeded", "SpotMaxPriceTooLow",
    "UnfulfillableCapacity", "FleetCapacityExceeded",
})
THROTTLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestThrottled",
    "TooManyRequestsException", "SlowDown", "EC2ThrottledException",
    "ServiceUnavailable", "Unavailable", "InternalError", "InternalFailure",
})
NOT_FOUND_SUFFIXES = (".NotFound", ".Malformed.NotFound")
NOT_FOUND_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidFleetId.NotFound",
                             "InvalidLaunchTemplateId.NotFound",
                             "InvalidLaunchTemplateName.NotFoundException"})
FATAL_HINTS = {
    "AuthFailure": "check the credentials (AWS_CREDENTIAL_FILE / AWS_PROFILE / instance role)",
    "UnauthorizedOperation": "the IAM policy lacks this action; see docs/iam-policy.json",
    "AccessDenied": "the IAM policy lacks this action; see docs/iam-policy.json",
    "InvalidClientTokenId": "the access key is not valid",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
    "ExpiredToken": "the session credentials have expired",
    "OptInRequired": "the account is not subscribed to this service or AMI",
    "InvalidAMIID.NotFound": "check the template's imageId",
    "InvalidAMIID.Malformed": "check the template's imageId",
    "InvalidSubnetID.NotFound": "check the template's subnetId",
    "InvalidGroup.NotFound": "check the template's securityGroupIds",
    "InvalidKeyPair.NotFound": "check the template's keyName",
    "InvalidParameterValue": "check the template fields named in the message",
    "InvalidParameterCombination": "check the template fields named in the message",
}


def classify(code: str) -> str:
    """AWS error code -> capacity | throttle | not_found | fatal."""
    if code in CAPACITY_CODES:
        return "capacity"
    if code in THROTTLE_CODES:
        return "throttle"
    if code in FATAL_HINTS:
        return "fatal"
    if code in NOT_FOUND_CODES or code.endswith(NOT_FOUND_SUFFIXES):
        return "not_found"
    return "fatal"


def hint(code: str) -> str:
    return FATAL_HINTS.get(code, "")


class Aws:
    """The process's AWS access: lazily made clients and a count of every call made."""

    def __init__(self, config: dict[str, Any], cache_dir: str | None = None) -> None:
        self.config = config
        self.cache_dir = cache_dir  # where the lean service models live; None: botocore's
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self.calls: Counter[str] = Counter()
        self.seconds = 0.0

    def _make_session(self) -> Any:
        """A botocore session as boto3 would make it, minus boto3 (~20 ms of imports)."""
        import botocore.session  # lazy: ~0.15 s, and not every verb needs it

        cfg = self.config
        script = bool(cfg.get("AWS_CREDENTIAL_SCRIPT"))
        creds = (_read_credentials_file(cfg["AWS_CREDENTIAL_FILE"],
                                        cfg.get("AWS_PROFILE") or "default")
                 if cfg.get("AWS_CREDENTIAL_FILE") and not script else None)
        session = botocore.session.Session(
            profile=None if creds else (cfg.get("AWS_PROFILE") or None))
        session.set_config_variable("region", cfg["AWS_REGION"])
        if creds:
            session.set_credentials(creds["aws_access_key_id"], creds["aws_secret_access_key"],
                                    creds.get("aws_session_token"))
        from hostfactory_aws.cloud import credentials

        credentials.attach(session, cfg)  # IBM's AWS_CREDENTIAL_SCRIPT (cloud/credentials.py)
        if self.cache_dir:
            from hostfactory_aws.cloud import service_models

            service_models.install(session, self.cache_dir)
        # botocore's documented hook (the AWS CLI uses it): timestamps without dateutil
        session.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=parse_timestamp)
        return session

    def client(self, service: str) -> Any:
        if service not in self._clients:
            from botocore.config import Config

            if self._session is None:
                self._session = self._make_session()
            cfg = self.config
            proxies = None
            if cfg.get("AWS_PROXY_HOST"):
                proxy = f"http://{cfg['AWS_PROXY_HOST']}:{cfg.get('AWS_PROXY_PORT', 8080)}"
                proxies = {"http": proxy, "https": proxy}
            bconf = Config(
                region_name=cfg["AWS_REGION"],
                connect_timeout=cfg["AWS_CONNECTION_TIMEOUT_MS"] / 1000.0,
                read_timeout=cfg["AWS_READ_TIMEOUT_MS"] / 1000.0,
                retries={"mode": "standard",
                         "total_max_attempts": cfg["AWS_REQUEST_RETRY_ATTEMPTS"] + 1},
                proxies=proxies,
                user_agent_extra="hostfactory-aws",
            )
            kwargs: dict[str, Any] = {"config": bconf}
            if cfg.get("AWS_ENDPOINT_URL") and service == "ec2":  # IBM: the EC2 endpoint only
                kwargs["endpoint_url"] = cfg["AWS_ENDPOINT_URL"]
            self._clients[service] = self._session.create_client(
                service, region_name=cfg["AWS_REGION"], **kwargs)
        return self._clients[service]

    def call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """Run one AWS operation; any failure becomes an AwsError with its code and kind."""
        client = self.client(service)
        method: Callable[..., dict[str, Any]] | None = getattr(client, _snake(operation), None)
        if method is None:  # never a customer's problem: tests/cli/test_iam_policy.py
            raise AwsError(operation, "OperationNotModelled",
                           f"{service} {operation} is not in the plugin's service models "
                           "(add it to cloud/service_models.OPERATIONS)", "fatal")
        # IBM's AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS/_INTERVAL: status reads are retried on
        # top of botocore's retries, waiting INTERVAL ms x the attempt number between them.
        retries = (self.config.get("AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS", 0)
                   if operation.startswith("Describe") else 0)
        for attempt in range(retries + 1):
            self.calls[operation] += 1
            start = time.monotonic()
            try:
                return method(**params)
            except Exception as exc:  # botocore raises ClientError and BotoCoreError
                err = _to_aws_error(operation, exc)
                if attempt == retries or err.kind not in ("throttle", "unknown"):
                    raise err from exc
            finally:
                self.seconds += time.monotonic() - start
            time.sleep(self.config.get("AWS_DESCRIBE_REQUEST_INTERVAL", 0) * (attempt + 1)
                       / 1000.0)
        raise AssertionError("unreachable")

    def paginate(self, service: str, operation: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Pages of one operation, each page counted as one call."""
        while True:
            page = self.call(service, operation, **params)
            yield page
            token = page.get("NextToken")
            if not token:
                return
            params = {**params, "NextToken": token}

    def summary(self) -> str:
        if not self.calls:
            return "no AWS calls"
        parts = ", ".join(f"{op}={n}" for op, n in sorted(self.calls.items()))
        return f"{sum(self.calls.values())} AWS calls ({parts}) in {self.seconds:.2f}s"


def parse_timestamp(value: Any) -> Any:
    """AWS's ISO 8601 timestamps (``2026-12-01T03:04:05.000Z``) by datetime, else botocore's.

    botocore hands every timestamp to dateutil, ~3 ms each: DescribeInstances has three or
    more per instance, seconds of CPU at 5,000 machines. Same aware datetimes, ~50x faster.
    """
    from datetime import datetime

    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z")
                                          else value)
        except ValueError:
            pass
    from botocore.utils import parse_timestamp as botocore_parse

    return botocore_parse(value)


def _snake(operation: str) -> str:
    out = []
    for i, ch in enumerate(operation):
        if ch.isupper() and i and not operation[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _to_aws_error(operation: str, exc: Exception) -> AwsError:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        code = response["Error"].get("Code", "Unknown")
        message = response["Error"].get("Message", str(exc))
        kind = classify(code)
        extra = hint(code)
        if extra:
            message = f"{message} ({extra})"
        return AwsError(operation, code, message, kind)
    # No answer from AWS at all (timeout, connection refused, no credentials): unknown.
    name = type(exc).__name__
    if name == "NoCredentialsError":
        return AwsError(operation, name, f"{exc} (set AWS_CREDENTIAL_FILE or AWS_PROFILE in "
                        "the config, or give the host an instance role)", "fatal")
    return AwsError(operation, name, str(exc), "unknown")


def _read_credentials_file(path: str, profile: str) -> dict[str, str]:
    """IBM's AWS_CREDENTIAL_FILE: an INI file with aws_access_key_id / aws_secret_access_key."""
    import configparser

    from hostfactory_aws.errors import ConfigError

    parser = configparser.ConfigParser()
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh)
    except OSError as exc:
        raise ConfigError(f"AWS_CREDENTIAL_FILE: cannot read {path}: {exc.strerror}") from exc
    section = profile if parser.has_section(profile) else None
    if section is None:
        sections = parser.sections()
        if len(sections) != 1:
            raise ConfigError(f"AWS_CREDENTIAL_FILE {path}: no [{profile}] section")
        section = sections[0]
    items = dict(parser.items(section))
    try:
        out = {"aws_access_key_id": items["aws_access_key_id"],
               "aws_secret_access_key": items["aws_secret_access_key"]}
    except KeyError as exc:
        raise ConfigError(f"AWS_CREDENTIAL_FILE {path} [{section}]: missing {exc.args[0]}") from exc
    if items.get("aws_session_token"):
        out["aws_session_token"] = items["aws_session_token"]
    return out
