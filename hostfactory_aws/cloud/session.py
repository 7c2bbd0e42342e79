"""One botocore session per process, clients made on first use; every failure an AwsError.

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

from hostfactory_aws import deadline
from hostfactory_aws.cloud import error_codes
from hostfactory_aws.errors import AwsError, HostFactoryError

log = logging.getLogger(__name__)

# The error table lives in error_codes (pure); these names stay importable from here.
classify = error_codes.classify
hint = error_codes.hint
DEADLINE_CODE = "VerbDeadlineReached"


class Aws:
    """The process's AWS access: lazily made clients and a count of every call made."""

    def __init__(self, config: dict[str, Any], cache_dir: str | None = None) -> None:
        self.config = config
        self.cache_dir = cache_dir  # where the lean service models live; None: botocore's
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self.calls: Counter[str] = Counter()
        self.seconds = 0.0
        self._sent = False  # did any attempt of the current call reach past connecting?
        self._timeouts: dict[str, dict[str, Any]] = {}  # by service, fitted to the deadline
        self._started = deadline.claim()

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
            timeouts = self._timeouts[service] = deadline.client_timeouts(cfg, self.left())
            bconf = Config(region_name=cfg["AWS_REGION"], proxies=proxies,
                           user_agent_extra="hostfactory-aws", **timeouts)
            kwargs: dict[str, Any] = {"config": bconf}
            if cfg.get("AWS_ENDPOINT_URL") and service == "ec2":  # IBM: the EC2 endpoint only
                kwargs["endpoint_url"] = cfg["AWS_ENDPOINT_URL"]
            client = self._session.create_client(
                service, region_name=cfg["AWS_REGION"], **kwargs)
            # first on the service's own event, ahead of botocore's retry handler
            client.meta.events.register_first(
                f"needs-retry.{client.meta.service_model.service_id.hyphenize()}",
                lambda **kw: self._after_attempt(timeouts, **kw))
            self._clients[service] = client
        return self._clients[service]

    def _refit(self, service: str) -> tuple[Any, dict[str, Any]]:
        """A new client for ``service`` whose timeouts fit what is left of the deadline."""
        self._clients.pop(service, None)
        client = self.client(service)
        return client, self._timeouts[service]

    def left(self) -> float:
        """Seconds left of this verb's deadline (VERB_DEADLINE_SEC)."""
        return deadline.remaining(float(self.config.get("VERB_DEADLINE_SEC", 120)),
                                  self._started)

    def _after_attempt(self, timeouts: dict[str, Any], attempts: int = 0,
                       caught_exception: Any = None, **_: Any) -> bool | None:
        """botocore's needs-retry hook, run first: note whether the attempt reached AWS, and
        refuse a retry that could not end before the deadline (None lets botocore decide)."""
        if caught_exception is None or (type(caught_exception).__name__
                                        not in error_codes.NOT_SENT_EXCEPTIONS):
            self._sent = True
        if not deadline.fits(timeouts, self.left(), backoff=min(2.0, 0.5 * attempts)):
            return False
        return None

    def call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """Run one AWS operation; any failure becomes an AwsError with its code and kind."""
        try:
            client = self.client(service)
        except HostFactoryError:
            raise
        except Exception as exc:  # bad region or profile: nothing sent
            raise _to_aws_error(operation, exc, sent=False) from exc
        method: Callable[..., dict[str, Any]] | None = getattr(client, _snake(operation), None)
        if method is None:  # never a customer's problem: tests/cli/test_iam_policy.py
            raise AwsError(operation, "OperationNotModelled",
                           f"{service} {operation} is not in the plugin's service models "
                           "(add it to cloud/service_models.OPERATIONS)", "fatal")
        timeouts = self._timeouts.get(service)
        # IBM's AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS/_INTERVAL: status reads are retried on
        # top of botocore's retries, waiting INTERVAL ms x the attempt number between them.
        retries = (self.config.get("AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS", 0)
                   if operation.startswith("Describe") else 0)
        for attempt in range(retries + 1):
            if timeouts and not deadline.fits(timeouts, self.left()) \
                    and deadline.worth_refitting(self.left()):
                # the client's timeouts were cut from the budget when it was made; calls
                # that end long before them (RunInstances batches at 10,000 machines) need
                # not stop at half the budget: a client cut to what is left goes on
                client, timeouts = self._refit(service)
                method = getattr(client, _snake(operation))
            if timeouts and not deadline.fits(timeouts, self.left()):
                raise AwsError(operation, DEADLINE_CODE, "not started: the verb's deadline "
                               "(VERB_DEADLINE_SEC) is too near; left for the next call",
                               "not_sent")
            self.calls[operation] += 1
            start = time.monotonic()
            self._sent = False
            try:
                return method(**params)
            except Exception as exc:  # botocore raises ClientError and BotoCoreError
                err = _to_aws_error(operation, exc, self._sent)
                # a read may be repeated whatever became of the last try (IBM retries reads
                # that got no answer), but never past the verb's deadline
                if (attempt == retries or err.code == DEADLINE_CODE
                        or err.kind not in (*error_codes.MAYBE_DONE, "not_sent")):
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


def _to_aws_error(operation: str, exc: Exception, sent: bool) -> AwsError:
    """What botocore raised -> AwsError whose kind says what may have happened (error_codes)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        code = str(response["Error"].get("Code") or "Unknown")
        message = str(response["Error"].get("Message") or exc)
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        kind = classify(code, status if isinstance(status, int) else None)
        if kind == "unknown" and code.isdigit():
            message = f"HTTP {code} {message[:200]} from AWS or a proxy or gateway on the way"
        extra = hint(code)
        if extra:
            message = f"{message} ({extra})"
        return AwsError(operation, code, message, kind)
    name = type(exc).__name__
    kind, extra = error_codes.exception_kind(name, sent)
    if kind == "not_sent":
        return AwsError(operation, name, f"{exc} (not sent to AWS: {extra})", kind)
    return AwsError(operation, name, str(exc), kind)


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
