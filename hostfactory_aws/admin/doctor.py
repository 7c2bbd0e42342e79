"""``hostfactory-aws doctor``: what the plugin sees on this host, and whether it can work.

Every check is one line, OK or FAIL, and a FAIL says what to fix. It reports where the
directories and files came from (which environment variable, or the default), because the
commonest mistake is a plugin reading a different config than the admin edited.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

from hostfactory_aws.cloud.error_codes import no_answer
from hostfactory_aws.errors import AwsError, HostFactoryError

OK, FAIL, SKIP, WARN = "OK", "FAIL", "SKIP", "WARN"  # WARN: works now, act soon
ENV_PREFIXES = ("HF_", "PRO_")
ENV_NAMES = ("PROVIDER_NAME", "LSF_ENVDIR", "LSF_TOP", "EGO_TOP", "EGO_CONFDIR",
             "HOSTFACTORY_AWS_PYTHON", "AWS_PROFILE", "AWS_REGION",
             "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE",
             "AWS_SHARED_CREDENTIALS_FILE", "HTTPS_PROXY", "https_proxy")
SECRET_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
MIN_PYTHON = (3, 9)


@dataclass
class Line:
    """One check: its status, what was checked, what was found, and what to do if FAIL."""

    status: str
    check: str
    detail: str
    fix: str = ""

    def text(self) -> str:
        out = f"{self.status:<4} {self.check}: {self.detail}"
        return out + (f" -> fix: {self.fix}" if self.fix else "")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run(env: dict[str, str] | None = None) -> list[Line]:
    """All checks, in the order an admin would fix them."""
    from hostfactory_aws.context import resolve

    env = dict(os.environ if env is None else env)
    lines: list[Line] = []
    try:
        ctx = resolve(env)
    except HostFactoryError as exc:
        check = "provider" if "provider name" in str(exc) or "PROVIDER_NAME" in str(exc) \
            else "dirs"
        lines.append(Line(FAIL, check, str(exc), "see the message"))
        return lines + _software()
    why = ctx.why
    lines.append(Line(OK, "provider", f"'{ctx.provider}' (from {why['provider']}), mode "
                      f"{ctx.mode}, memory attribute '{ctx.mem_key}'"))
    lines.append(_environment(env, ctx.mode))
    lines.append(_one_view(ctx))
    lines.append(_conf_dir(ctx.conf_dir, why["conf_dir"]))
    config = _config(ctx, lines)
    _templates(ctx, lines)
    lines.append(_writable("work dir", ctx.work_dir, why["work_dir"], "HF_PROVIDER_WORKDIR"
                           if ctx.mode != "lsf" else "PRO_DATA_DIR"))
    lines.append(_writable("log dir", ctx.log_dir, why["log_dir"], "HF_PROVIDER_LOGDIR"
                           if ctx.mode != "lsf" else "PRO_LSF_LOGDIR"))
    lines.append(_state(ctx))
    lines += _software()
    lines += _aws(ctx, config)
    return lines


def _one_view(ctx: Any) -> Line:
    """Do these dirs hold HostFactory's own state? Commands that end hosts need it."""
    plugin = f"plugin dir {ctx.plugin_dir}" if ctx.plugin_dir else "no plugin dir found"
    if ctx.unsure:
        return Line(FAIL, "one view", f"{plugin}; {ctx.unsure}",
                    "export what the message names; until then orphans --terminate and "
                    "requestReturnMachines (which end hosts) refuse")
    return Line(OK, "one view", f"{plugin}; the dirs are HostFactory's (its variables, or "
                "found beside the scripts): commands that end hosts may run")


def _environment(env: dict[str, str], mode: str) -> Line:
    seen = sorted(k for k in env if k.startswith(ENV_PREFIXES) or k in ENV_NAMES)
    shown = [f"{k}={env[k]}" for k in seen]
    shown += [f"{k}=(set)" for k in SECRET_NAMES if env.get(k)]
    if not shown:
        return Line(OK, "environment", "no HostFactory or LSF variables: standalone mode, "
                    "the plugin's own conf/, work/ and log/ are used")
    note = ""
    if mode == "symphony" and any(k.startswith("PRO_") for k in seen):
        note = " (HF_* variables win over PRO_*)"
    return Line(OK, "environment", ", ".join(shown) + note)


def _conf_dir(path: str, why: str) -> Line:
    if os.path.isdir(path):
        return Line(OK, "conf dir", f"{path} (from {why})")
    return Line(FAIL, "conf dir", f"{path} (from {why}) does not exist",
                "create it with awsprov_config.json and awsprov_templates.json in it, or "
                "point HF_PROVIDER_CONFDIR (PRO_CONF_DIR for LSF) at the right place")


def file_why(ctx: Any, kind: str) -> str:
    """Why this file: the provider-named one, or the generic one because there is none."""
    if ctx.why.get(kind) == "provider-named file":
        return f"named after provider '{ctx.provider}'"
    return f"no {ctx.provider}prov_{kind}.json there, so the generic one"


def _config(ctx: Any, lines: list[Line]) -> dict[str, Any] | None:
    from hostfactory_aws.config import load_config

    where = f"{ctx.config_path} ({file_why(ctx, 'config')})"
    try:
        config = load_config(ctx.config_path)
    except HostFactoryError as exc:
        lines.append(Line(FAIL, "config file", f"{where}: {_strip(str(exc), ctx.config_path)}",
                          "correct the file (hostfactory-aws validate lists every problem)"))
        return None
    ctx._config = config
    from hostfactory_aws.config import problems

    unknown = problems(config)
    if unknown:  # the verbs still run; the admin should still hear of it
        lines.append(Line(FAIL, "config file",
                          f"{where}: {_strip('; '.join(unknown), ctx.config_path)}",
                          "correct or remove the key (the verbs ignore it meanwhile; "
                          "hostfactory-aws validate lists every problem)"))
        return config
    lines.append(Line(OK, "config file", f"{where}: valid"))
    return config


def _templates(ctx: Any, lines: list[Line]) -> None:
    from hostfactory_aws.templates import load_templates

    where = f"{ctx.templates_path} ({file_why(ctx, 'templates')})"
    try:
        templates = load_templates(ctx.templates_path)
    except HostFactoryError as exc:
        lines.append(Line(FAIL, "templates file",
                          f"{where}: {_strip(str(exc), ctx.templates_path)}",
                          "correct the file (hostfactory-aws validate lists every problem)"))
        return
    ids = ", ".join(t["templateId"] for t in templates) or "none"
    status = OK if templates else FAIL
    lines.append(Line(status, "templates file", f"{where}: {len(templates)} templates ({ids})",
                      "" if templates else "add at least one template"))


def _strip(message: str, path: str) -> str:
    """The problems without the file name repeated in front of each."""
    return message.replace(f"{path}: ", "")


def _writable(name: str, path: str, why: str, variable: str) -> Line:
    """Create and delete a file there, as every call does with the state and log files."""
    where = f"{path} (from {why})"
    fix = f"make it writable by user {_user()}, or set {variable} to a writable directory"
    created = not os.path.isdir(path)
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".doctor-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return Line(FAIL, name, f"{where}: not writable: {exc.strerror or exc}", fix)
    return Line(OK, name, f"{where}: writable" + (" (created now)" if created else ""))


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


def _state(ctx: Any) -> Line:
    import json

    path = ctx.state_path
    if not os.path.exists(path):
        return Line(OK, "state file", f"{path}: none yet (the first requestMachines makes it)")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        reqs = data["requests"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Line(FAIL, "state file", f"{path}: unreadable: {exc}",
                    "the next call moves it aside and restores the .bak copy; check the disk")
    from hostfactory_aws import records, state

    if not isinstance(reqs, dict):
        reqs = {}
    bad = {rid: why for rid, r in reqs.items() if (why := state.record_problem(rid, r))}
    bad.update({rid: f"{e.get('problem')} (set aside)" for rid, e in
                state.quarantined(path).items() if isinstance(e, dict)})
    open_ = sum(1 for r in reqs.values() if isinstance(r, dict) and r.get("endedAt") is None)
    detail = f"{path}: {len(reqs)} requests, {open_} open"
    if bad:
        listed = "; ".join(f"{rid[:60]!r}: {why}" for rid, why in sorted(bad.items())[:5])
        return Line(FAIL, "state file", f"{detail}; {len(bad)} damaged records: {listed}",
                    f"see {state.quarantine_path(path)} (requests are answered from the "
                    "instances' tags meanwhile); delete that file once reviewed")
    stuck = records.stuck({"requests": {k: v for k, v in reqs.items() if k not in bad}})
    if stuck:
        why = "; ".join(f"{rid}: {s['what']} failed {s['attempts']}x "
                        f"({', '.join(s['resources']) or '-'}): {s['error']}"
                        for rid, s in sorted(stuck.items())[:5])
        status = FAIL if max(x["attempts"] for x in stuck.values()) >= 3 else OK
        return Line(status, "state file", f"{detail}, {len(stuck)} stuck: {why}",
                    "fix what AWS says (permissions, limits); the plugin retries by itself "
                    "and keeps the record until its fleet, group or template is gone")
    return Line(OK, "state file", detail)


def _software() -> list[Line]:
    from hostfactory_aws import __version__

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = [Line(OK, "version", f"hostfactory-aws {__version__} ({here})")]
    ver = sys.version.split()[0]
    if sys.version_info[:2] >= MIN_PYTHON:
        out.append(Line(OK, "python", f"{ver} ({sys.executable})"))
    else:
        out.append(Line(FAIL, "python", f"{ver} ({sys.executable}) is older than 3.9",
                        "set HOSTFACTORY_AWS_PYTHON to a Python 3.9+ interpreter"))
    for module, fix in (("boto3", "pip install boto3"), ("botocore", "pip install botocore"),
                        ("jsonschema", "pip install jsonschema")):
        try:
            mod = __import__(module)
            out.append(Line(OK, module, f"{getattr(mod, '__version__', '?')}"))
        except ImportError as exc:
            out.append(Line(FAIL, module, f"cannot import: {exc}",
                            f"{fix} into {sys.executable}'s environment"))
    return out


def _aws(ctx: Any, config: dict[str, Any] | None) -> list[Line]:
    """Region, endpoint, credentials, identity (STS) and one cheap EC2 call."""
    names = ("region", "credentials", "identity", "ec2")
    if config is None:
        return [Line(SKIP, n, "needs a valid config file") for n in names]
    from hostfactory_aws.cloud.session import Aws

    # Fail fast: a doctor that waits out every retry is no help at the console.
    quick = {**config, "AWS_REQUEST_RETRY_ATTEMPTS": min(1, config["AWS_REQUEST_RETRY_ATTEMPTS"])}
    aws = Aws(quick)
    endpoint = (config.get("AWS_ENDPOINT_URL")
                or (f"{os.environ['AWS_ENDPOINT_URL']} (from $AWS_ENDPOINT_URL)"
                    if os.environ.get("AWS_ENDPOINT_URL") else "AWS default for the region"))
    proxy = (f", proxy {config['AWS_PROXY_HOST']}:{config.get('AWS_PROXY_PORT', 8080)}"
             if config.get("AWS_PROXY_HOST") else "")
    out = [Line(OK, "region", f"{config['AWS_REGION']}, endpoint {endpoint}{proxy}")]
    try:
        creds = aws._make_session().get_credentials()  # where boto3 finds them, no call
    except HostFactoryError as exc:
        return out + [Line(FAIL, "credentials", str(exc), "fix AWS_CREDENTIAL_FILE"),
                      Line(SKIP, "identity", "needs credentials"),
                      Line(SKIP, "ec2", "needs credentials")]
    except Exception as exc:  # botocore: a profile that does not exist, and the like
        return out + [Line(FAIL, "credentials", f"{type(exc).__name__}: {exc}",
                           "fix AWS_PROFILE / AWS_CREDENTIAL_FILE in the config"),
                      Line(SKIP, "identity", "needs credentials"),
                      Line(SKIP, "ec2", "needs credentials")]
    if creds is None:
        return out + [Line(FAIL, "credentials", "none found (config file, environment, "
                           "shared files, instance role)",
                           "set AWS_CREDENTIAL_FILE or AWS_PROFILE in the config, or give "
                           "the host an instance role"),
                      Line(SKIP, "identity", "needs credentials"),
                      Line(SKIP, "ec2", "needs credentials")]
    source = "AWS_CREDENTIAL_FILE" if config.get("AWS_CREDENTIAL_FILE") else creds.method
    out.append(Line(OK, "credentials", f"from {source}"))
    try:
        who = aws.call("sts", "GetCallerIdentity")
        out.append(Line(OK, "identity", f"account {who.get('Account')}, {who.get('Arn')}"))
    except AwsError as exc:
        out.append(Line(FAIL, "identity", f"STS GetCallerIdentity: {_aws_text(exc)}",
                        _aws_fix(exc, "sts:GetCallerIdentity")))
    from hostfactory_aws.tags import provider_filter

    try:
        resp = aws.call("ec2", "DescribeInstances", Filters=[provider_filter(ctx.provider)],
                        MaxResults=5)
        n = sum(len(r.get("Instances", [])) for r in resp.get("Reservations", []))
        more = "+" if resp.get("NextToken") else ""
        out.append(Line(OK, "ec2", f"DescribeInstances answered: {n}{more} instances tagged "
                        f"hostfactory:provider={ctx.provider}"))
    except AwsError as exc:
        out.append(Line(FAIL, "ec2", f"DescribeInstances: {_aws_text(exc)}",
                        _aws_fix(exc, "ec2:DescribeInstances")))
    groups = _asg_templates(ctx)
    if groups:
        out.append(_asg_quota(aws, groups))
    return out


def _asg_templates(ctx: Any) -> list[dict[str, Any]]:
    try:
        return [t for t in ctx.templates if t.get("providerApi") == "ASG"]
    except HostFactoryError:
        return []  # the templates line already says what is wrong


# Warn when more of the groups quota than this is in use.
ASG_QUOTA_WARN_SHARE = 0.8


def asg_quota_line(used: int, limit: int, templates: list[dict[str, Any]]) -> Line:
    """The groups quota against what the ASG templates could need (pure): every request
    makes its own group, so a template may need as many as its maxNumber (one machine per
    request). FAIL when no group can be made, WARN when fewer remain than the templates
    could need or more than 80% are used."""
    free = max(0, limit - used)
    bounded = [t["maxNumber"] for t in templates if t.get("maxNumber", -1) >= 0]
    need = sum(bounded) if len(bounded) == len(templates) else None
    ids = ", ".join(t["templateId"] for t in templates)
    detail = (f"{used} of {limit} Auto Scaling groups in use, {free} free; templates {ids} "
              f"make one group per request" + (f" (up to {need})" if need is not None else ""))
    fix = ("delete groups no longer needed, or raise the quota 'Auto Scaling groups per "
           "region' in Service Quotas")
    if free == 0:
        return Line(FAIL, "asg quota", detail + ": requestMachines with these templates fails",
                    fix)
    if used > ASG_QUOTA_WARN_SHARE * limit or (need is not None and free < need):
        return Line(WARN, "asg quota", detail + ": few groups left", fix)
    return Line(OK, "asg quota", detail)


def _asg_quota(aws: Any, templates: list[dict[str, Any]]) -> Line:
    try:
        resp = aws.call("autoscaling", "DescribeAccountLimits")
    except AwsError as exc:
        return Line(FAIL, "asg quota", f"Auto Scaling DescribeAccountLimits: {_aws_text(exc)}",
                    _aws_fix(exc, "autoscaling:DescribeAccountLimits"))
    return asg_quota_line(int(resp.get("NumberOfAutoScalingGroups", 0)),
                          int(resp.get("MaxNumberOfAutoScalingGroups", 0)), templates)


def _aws_text(exc: AwsError) -> str:
    return f"{exc.code}: {exc.aws_message}"


def _aws_fix(exc: AwsError, action: str) -> str:
    if no_answer(exc.kind, exc.code):
        return "AWS did not answer: check AWS_ENDPOINT_URL, AWS_PROXY_HOST/PORT and the network"
    if exc.code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException"):
        return f"allow {action} (see docs/iam-policy.json)"
    if exc.code in ("AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch",
                    "ExpiredToken", "UnrecognizedClientException"):
        return "the credentials are not valid: renew them or fix AWS_CREDENTIAL_FILE/AWS_PROFILE"
    return "see the message"
