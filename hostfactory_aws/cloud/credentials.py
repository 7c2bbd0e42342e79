"""IBM's AWS_CREDENTIAL_SCRIPT: temporary credentials from the admin's script, renewed in time.

The script prints credentials in either of IBM's two forms:
  - LSF awsv2's JSON: {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    (also accepted wrapped as {"Credentials": {...}}, the output of ``aws sts assume-role``);
  - the aws Java plugin's credentials file: ``[default]`` with aws_access_key_id,
    aws_secret_access_key, aws_session_token.
botocore's RefreshableCredentials runs it again before the credentials lapse: at their
Expiration, or AWS_CREDENTIAL_RENEW_MARGIN seconds after they were issued (IBM's rule, 1770
by default), whichever is first.
"""

from __future__ import annotations

import datetime
import json
import logging
import subprocess
from typing import Any

from hostfactory_aws.errors import ConfigError

log = logging.getLogger(__name__)
SCRIPT_TIMEOUT_SEC = 60


def parse_output(text: str, script: str) -> dict[str, str]:
    """Either IBM form -> {access_key, secret_key, token, expiry_time (ISO) or ""}."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except ValueError as exc:
            raise ConfigError(f"AWS_CREDENTIAL_SCRIPT {script}: output is not valid JSON: "
                              f"{exc}") from None
        doc = doc.get("Credentials", doc) if isinstance(doc, dict) else {}
        keys = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
    else:
        import configparser

        parser = configparser.ConfigParser()
        try:
            parser.read_string(stripped)
        except configparser.Error as exc:
            raise ConfigError(f"AWS_CREDENTIAL_SCRIPT {script}: output is neither JSON nor a "
                              f"credentials file: {exc}") from None
        section = "default" if parser.has_section("default") else (parser.sections() or [""])[0]
        doc = dict(parser.items(section)) if section else {}
        keys = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "expiration")
    missing = [k for k in keys[:2] if not doc.get(k)]
    if missing:
        raise ConfigError(f"AWS_CREDENTIAL_SCRIPT {script}: output lacks {', '.join(missing)}")
    return {"access_key": str(doc[keys[0]]), "secret_key": str(doc[keys[1]]),
            "token": str(doc.get(keys[2]) or ""), "expiry_time": str(doc.get(keys[3]) or "")}


def run_script(script: str) -> str:
    try:
        proc = subprocess.run([script], capture_output=True, text=True,
                              timeout=SCRIPT_TIMEOUT_SEC, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"AWS_CREDENTIAL_SCRIPT {script}: cannot run: {exc}") from None
    if proc.returncode != 0:
        raise ConfigError(f"AWS_CREDENTIAL_SCRIPT {script}: exit {proc.returncode}: "
                          f"{proc.stderr.strip()[-300:]}")
    return proc.stdout


def expiry(issued: datetime.datetime, given: str, margin_sec: int) -> str:
    """When to fetch again: the credentials' Expiration or issue + margin, the earlier."""
    renew = issued + datetime.timedelta(seconds=margin_sec)
    if given:
        try:
            stated = datetime.datetime.fromisoformat(given.replace("Z", "+00:00"))
            if stated.tzinfo is None:
                stated = stated.replace(tzinfo=datetime.timezone.utc)
            renew = min(renew, stated)
        except ValueError:
            log.warning("AWS_CREDENTIAL_SCRIPT: Expiration %r is not a date; renewing after "
                        "AWS_CREDENTIAL_RENEW_MARGIN", given)
    return renew.isoformat()


def fetcher(cfg: dict[str, Any]) -> Any:
    """A botocore refresh function: runs the script, returns credential metadata."""
    script = cfg["AWS_CREDENTIAL_SCRIPT"]
    margin = int(cfg.get("AWS_CREDENTIAL_RENEW_MARGIN", 1770))

    def fetch() -> dict[str, str]:
        issued = datetime.datetime.now(datetime.timezone.utc)
        creds = parse_output(run_script(script), script)
        creds["expiry_time"] = expiry(issued, creds["expiry_time"], margin)
        log.info("AWS_CREDENTIAL_SCRIPT %s: temporary credentials until %s", script,
                 creds["expiry_time"])
        return creds

    return fetch


def attach(session: Any, cfg: dict[str, Any]) -> None:
    """Give a botocore session the script's refreshable credentials (IBM: the script wins over
    AWS_CREDENTIAL_FILE when both are set). No script: nothing to do."""
    if not cfg.get("AWS_CREDENTIAL_SCRIPT"):
        return
    from botocore.credentials import RefreshableCredentials

    if cfg.get("AWS_CREDENTIAL_FILE"):
        log.warning("both AWS_CREDENTIAL_FILE and AWS_CREDENTIAL_SCRIPT are set; using "
                    "AWS_CREDENTIAL_SCRIPT, as IBM's plugin does")
    fetch = fetcher(cfg)
    creds = RefreshableCredentials.create_from_metadata(
        metadata=fetch(), refresh_using=fetch, method="hostfactory-aws-credential-script")
    # botocore has no public setter for refreshable credentials; a boto3 Session wraps one
    getattr(session, "_session", session)._credentials = creds
