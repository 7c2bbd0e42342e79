"""The admin's command, ``hostfactory-aws``: the five verbs, and the checks around them.

The verbs print exactly what the scripts print. The admin commands print for people:
tables on stdout (or ``--json``), progress and one-line errors on stderr, details in the
plugin log. Exit 0 when all is well, 1 when a problem was found or a call failed, 2 for
a usage error (argparse's own code).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from typing import Any

from hostfactory_aws.invoke_provider import VERBS

log = logging.getLogger("hostfactory_aws.admin.cli")
PROG = "hostfactory-aws"
EPILOG = """\
exit codes:
  0  all well (a verb's JSON answer, a passing check)
  1  a problem was found or a call failed: one line on stderr says what to fix,
     details go to <log dir>/<provider>-hostfactory-aws.log
  2  usage error (unknown command or option)

where things are: $HF_PROVIDER_CONFDIR, $HF_PROVIDER_WORKDIR, $HF_PROVIDER_LOGDIR and
$HF_PROVIDER_NAME (Symphony), else $PRO_CONF_DIR/conf, $PRO_DATA_DIR, $PRO_LSF_LOGDIR and
$PROVIDER_NAME (LSF), else the plugin's own conf/, work/ and log/. `doctor` shows which.

examples:
  hostfactory-aws doctor                 is this host set up? (dirs, files, AWS identity)
  hostfactory-aws validate --aws         do the templates' AMIs, subnets... exist? may we launch?
  hostfactory-aws templates              the templates as HostFactory sees them
  hostfactory-aws status                 open requests and their machines
  echo '{"template": {"templateId": "T", "machineCount": 2}}' | hostfactory-aws requestMachines
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, epilog=EPILOG, formatter_class=_Formatter,
        description="AWS provider plugin for IBM Spectrum Symphony HostFactory and the LSF "
                    "resource connector:\nthe five HostFactory verbs, and admin checks.")
    from hostfactory_aws import __version__

    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    helps = {
        "getAvailableTemplates": "HostFactory verb: the templates (JSON, as the script)",
        "requestMachines": "HostFactory verb: launch machines (JSON in, request id out)",
        "getRequestStatus": "HostFactory verb: status of request/return ids (JSON)",
        "requestReturnMachines": "HostFactory verb: terminate machines given back (JSON)",
        "getReturnRequests": "HostFactory verb: machines the cloud is taking back (JSON)",
    }
    for verb in VERBS:
        v = sub.add_parser(verb, help=helps[verb])
        v.add_argument("-f", dest="file", help="input JSON file (default: standard input)")
    t = sub.add_parser("templates", help="the templates as HostFactory sees them, a table")
    t.add_argument("--json", action="store_true", help="print getAvailableTemplates' JSON")
    v = sub.add_parser("validate", help="check config and templates offline; --aws: in AWS "
                                        "too")
    v.add_argument("--aws", action="store_true",
                   help="also ask AWS: AMIs, instance types, subnets, security groups, key "
                        "pairs, launch templates, instance profiles, fleet roles, and a DryRun "
                        "launch per template")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    d = sub.add_parser("doctor", help="dirs, files, env, versions, AWS identity: OK/FAIL")
    d.add_argument("--json", action="store_true", help="print the result as JSON")
    s = sub.add_parser("status", help="open requests and their machines by EC2 state")
    s.add_argument("--all", action="store_true", help="also requests that have ended")
    s.add_argument("--machines", action="store_true", help="one line per machine too")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    e = sub.add_parser("demo", help="the whole cycle: the five scripts against a sandbox EC2")
    e.add_argument("--count", type=int, default=2, help="machines (units) per request")
    from hostfactory_aws.admin.sandbox_command import add_arguments as sandbox_arguments

    sandbox_arguments(sub.add_parser("sandbox", help="a sandbox EC2 on loopback, seeded, with "
                                                     "a ready conf dir: try it all by hand"))
    i = sub.add_parser("iam-policy", help="the least-privilege IAM policy for this config and "
                                          "these templates (JSON)")
    i.add_argument("--aws", action="store_true",
                   help="ask IAM which roles the instance profiles hold (else: a profile's "
                        "role is assumed to have the profile's name, as the console makes it)")
    from hostfactory_aws.admin.orphans import add_arguments as orphans_arguments

    orphans_arguments(sub.add_parser("orphans", help="instances of this provider that no "
                                                     "request holds (--terminate)"))
    return p


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Each command's help on one line beside its name."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=100)

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        # argparse leaves the subcommands' indent out of its column sum: make room for it.
        self._action_max_length = max(self._action_max_length, 28)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "orphans":
        from hostfactory_aws.admin.orphans import orphans_command

        return orphans_command(args)
    if args.command in VERBS:
        from hostfactory_aws.invoke_provider import main as invoke

        if args.command == "requestReturnMachines" and (refusal := _unsure()):
            return _fail(args.command, refusal)
        return invoke([args.command] + (["-f", args.file] if args.file else []))
    if args.command == "demo":
        from hostfactory_aws.admin.sandbox_command import run_demo

        return run_demo(machine_count=args.count)
    if args.command == "sandbox":
        from hostfactory_aws.admin.sandbox_command import sandbox_command

        return sandbox_command(args)
    handlers = {"validate": _validate, "templates": _templates, "doctor": _doctor,
                "status": _status, "iam-policy": _iam_policy}
    return _guarded(args.command, handlers[args.command], args)


def _guarded(command: str, handler: Any, args: argparse.Namespace) -> int:
    """Run an admin command: a known failure is one line on stderr, a bug also a log entry."""
    from hostfactory_aws.cloud.error_codes import no_answer
    from hostfactory_aws.errors import AwsError, HostFactoryError

    try:
        return int(handler(args))
    except HostFactoryError as exc:
        log.error("%s: %s", command, exc)
        hint = ""
        from hostfactory_aws.admin.check_aws import BAD_CREDENTIALS

        if isinstance(exc, AwsError) and exc.code in BAD_CREDENTIALS:
            hint = (" (the credentials are missing or AWS rejects them: fix AWS_CREDENTIAL_FILE"
                    " / AWS_PROFILE in the config, or the host's instance role; nothing else "
                    "was checked)")
        elif isinstance(exc, AwsError) and no_answer(exc.kind, exc.code):
            hint = (" (AWS did not answer: check AWS_ENDPOINT_URL, AWS_PROXY_HOST/PORT and the "
                    "network; `hostfactory-aws doctor` shows what is used)")
        return _fail(command, str(exc) + hint)
    except KeyboardInterrupt:
        return _fail(command, "interrupted")
    except Exception as exc:
        log.exception("%s: unexpected error", command)
        return _fail(command, f"internal error: {type(exc).__name__}: {exc} (details in the "
                              "plugin log)")


def _unsure() -> str:
    """Why this shell may not see HostFactory's state ('' when it does): ending hosts then
    could end machines HostFactory holds, so such commands refuse."""
    from hostfactory_aws.context import resolve
    from hostfactory_aws.errors import HostFactoryError

    try:
        ctx = resolve()
    except HostFactoryError as exc:
        return f"refusing to end hosts: {exc}"
    return f"refusing to end hosts: {ctx.unsure}" if ctx.unsure else ""


def _iam_policy(args: argparse.Namespace) -> int:
    from hostfactory_aws.admin import iam_policy

    ctx = _context()
    roles = iam_policy.profile_roles(ctx) if args.aws else None
    _out(json.dumps(iam_policy.policy(ctx.config, ctx.templates, ctx.provider, roles),
                    indent=2))
    return 0


def _fail(command: str, message: str) -> int:
    sys.stderr.write(f"{PROG} {command}: {message}\n")
    return 1


def _context() -> Any:
    """The context, with the plugin log set up when the log dir allows (else no file log)."""
    from hostfactory_aws.context import resolve
    from hostfactory_aws.errors import HostFactoryError
    from hostfactory_aws.logs import setup_logging

    ctx = resolve()
    with contextlib.suppress(HostFactoryError, OSError):
        setup_logging(ctx)  # else no file log: `doctor` says why, checks still run
    return ctx


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


# -- validate ------------------------------------------------------------------------------

def split_problems(message: str, path: str) -> list[str]:
    """A ConfigError's text -> one problem per line (each problem starts with the file)."""
    parts = message.split(f"; {path}: ")
    return [parts[0]] + [f"{path}: {p}" for p in parts[1:]]


def offline_problems(ctx: Any) -> list[str]:
    """Every problem of the config and templates files, one line each (both files checked)."""
    from hostfactory_aws.config import load_config
    from hostfactory_aws.config import problems as config_problems
    from hostfactory_aws.errors import ConfigError
    from hostfactory_aws.templates import load_templates

    problems: list[str] = []
    try:
        ctx._config = load_config(ctx.config_path)
        problems += config_problems(ctx._config)  # unknown keys: served, but reported
    except ConfigError as exc:
        problems += split_problems(str(exc), ctx.config_path)
    try:
        ctx._templates = load_templates(ctx.templates_path)
    except ConfigError as exc:
        problems += split_problems(str(exc), ctx.templates_path)
    return problems


def _validate(args: argparse.Namespace) -> int:
    ctx = _context()
    problems = offline_problems(ctx)
    result: dict[str, Any] = {"ok": not problems, "config": ctx.config_path,
                              "templates": ctx.templates_path, "problems": problems}
    if problems:
        if args.json:
            _out(json.dumps(result, indent=2))
        else:
            for line in problems:
                _out(line)
        sys.stderr.write(f"{PROG} validate: {len(problems)} problem(s); fix them and run "
                         "validate again\n")
        return 1
    ids = [t["templateId"] for t in ctx.templates]
    if not args.aws:
        result["templateIds"] = ids
        if args.json:
            _out(json.dumps(result, indent=2))
        else:
            _out(f"ok: {ctx.config_path}: valid")
            _out(f"ok: {ctx.templates_path}: {len(ids)} templates "
                 f"({', '.join(ids) or 'none'})")
        return 0
    from hostfactory_aws.admin import check_aws

    sys.stderr.write(f"validate --aws: {len(ids)} templates, region "
                     f"{ctx.config['AWS_REGION']}\n")
    checks = check_aws.run(ctx, lambda line: sys.stderr.write(line + "\n"))
    failed = [c for c in checks if not c.ok]
    for c in failed:
        log.error("validate --aws: template %s: %s: %s", c.template, c.check, c.detail)
    result.update(ok=not failed, region=ctx.config["AWS_REGION"],
                  checks=[c.as_dict() for c in checks])
    if args.json:
        _out(json.dumps(result, indent=2))
    else:
        for line in check_aws.table(checks):
            _out(line)
    if failed:
        sys.stderr.write(f"{PROG} validate --aws: {len(failed)} of {len(checks)} checks "
                         "failed; fix what the DETAIL column names\n")
        return 1
    return 0


# -- templates -----------------------------------------------------------------------------

def _templates(args: argparse.Namespace) -> int:
    from hostfactory_aws.invoke_provider import run

    code, answer = run(["getAvailableTemplates"], _Empty())
    if args.json:
        _out(json.dumps(answer, indent=2))
        return code
    if code:
        return _fail("templates", answer.get("message", "failed"))
    rows = [("TEMPLATE", "MAX", "AVAILABLE", "API", "PRICE", "TYPE", "NCPUS", "NRAM/MEM",
             "VMTYPES")]
    for t in answer["templates"]:
        attrs: dict[str, Any] = t["attributes"]
        mem = attrs.get("nram", attrs.get("mem", ["", "-"]))[1]
        vm = t.get("vmTypes") or t.get("vmType") or "-"
        vm_text = ",".join(vm) if isinstance(vm, (dict, list)) else str(vm)
        rows.append((t["templateId"], str(t["maxNumber"]), str(t.get("availableNumber", "-")),
                     t.get("providerApi", "RunInstances"), t.get("priceType", "ondemand"),
                     attrs.get("type", ["", "-"])[1], attrs.get("ncpus", ["", "-"])[1], mem,
                     vm_text))
    for line in _table(rows):
        _out(line)
    if " left out, in error: " in answer.get("message", ""):  # the good ones are served
        return _fail("templates", answer["message"])
    return 0


class _Empty:
    def isatty(self) -> bool:
        return False

    def read(self) -> str:
        return "{}"


# -- doctor --------------------------------------------------------------------------------

def _doctor(args: argparse.Namespace) -> int:
    from hostfactory_aws.admin import doctor

    lines = doctor.run()
    failed = [line for line in lines if line.status == doctor.FAIL]
    if args.json:
        _out(json.dumps({"ok": not failed, "checks": [line.as_dict() for line in lines]},
                        indent=2))
    else:
        for line in lines:
            _out(line.text())
        warned = sum(1 for line in lines if line.status == doctor.WARN)
        more = f", {warned} to act on soon" if warned else ""
        _out(f"{len(lines) - len(failed) - warned} checks passed or skipped{more}, "
             f"{len(failed)} failed")
    return 1 if failed else 0


# -- status --------------------------------------------------------------------------------

def status_report(data: dict[str, Any], found: dict[str, dict[str, Any]], now: float,
                  show_all: bool = False) -> dict[str, Any]:
    """Requests of the state file with their machines' EC2 states from one sweep (pure)."""
    from hostfactory_aws import machines
    from hostfactory_aws import tags as tagmod

    requests = []
    held: set[str] = set()
    for rid, rec in sorted(data["requests"].items(), key=lambda kv: kv[1].get("createdAt", 0)):
        ended = rec.get("endedAt") is not None
        if rec.get("kind") == "create":
            ids = set(rec.get("instances", {}))
            ids |= {iid for iid, inst in found.items()
                    if tagmod.from_aws(inst.get("Tags")).get(tagmod.REQUEST_ID) == rid}
            template = rec.get("templateId", "?")
        else:
            ids = set(rec.get("machines", {}))
            tids = {tagmod.from_aws(found[i].get("Tags")).get(tagmod.TEMPLATE_ID, "?")
                    for i in ids if i in found}
            template = ",".join(sorted(tids)) or "-"
        if not ended:
            held |= ids
        if ended and not show_all:
            continue
        ms = {}
        for iid in sorted(ids):
            inst = found.get(iid)
            ms[iid] = {"state": machines.state_of(inst) if inst else "not-listed",
                       "name": machines.host_name(inst) if inst else
                       (rec.get("instances", {}).get(iid, {}).get("name")
                        or rec.get("machines", {}).get(iid, {}).get("name") or "")}
        counts: dict[str, int] = {}
        for m in ms.values():
            counts[m["state"]] = counts.get(m["state"], 0) + 1
        requests.append({"requestId": rid, "templateId": template, "kind": rec.get("kind"),
                         "status": rec.get("status", "?"), "units": rec.get("units"),
                         "createdAt": rec.get("createdAt"), "ended": ended,
                         "age": _age(now - float(rec.get("createdAt") or now)),
                         "byState": counts, "machines": ms})
    by_state: dict[str, int] = {}
    for inst in found.values():
        by_state[machines.state_of(inst)] = by_state.get(machines.state_of(inst), 0) + 1
    live = [iid for iid, inst in found.items()
            if machines.state_of(inst) not in ("terminated", "shutting-down")]
    from hostfactory_aws import records

    return {"requests": requests, "instances": by_state,
            "liveNotHeld": sorted(i for i in live if i not in held),
            "stuck": records.stuck(data)}


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _status(args: argparse.Namespace) -> int:
    from hostfactory_aws import state
    from hostfactory_aws.cloud import instances

    ctx = _context()
    data = state.read(ctx.state_path, ctx.config["STATE_LOCK_TIMEOUT_SEC"])
    found = instances.sweep(ctx.aws, ctx.provider)
    report = status_report(data, found, time.time(), args.all)
    report["provider"] = ctx.provider
    report["stateFile"] = ctx.state_path
    if args.json:
        _out(json.dumps(report, indent=2))
        return 0
    if not report["requests"]:
        _out(f"no {'' if args.all else 'open '}requests in {ctx.state_path}")
    else:
        rows = [("REQUEST", "TEMPLATE", "KIND", "STATUS", "AGE", "MACHINES")]
        for r in report["requests"]:
            states = " ".join(f"{k}={v}" for k, v in sorted(r["byState"].items())) or "none"
            status = r["status"] + (" (ended)" if r["ended"] else "")
            rows.append((r["requestId"], r["templateId"], r["kind"] or "?", status, r["age"],
                         states))
            if args.machines:
                for iid, m in r["machines"].items():
                    rows.append(("", "", "", "", "", f"  {iid} {m['state']} {m['name']}"))
        for line in _table(rows):
            _out(line)
    total = " ".join(f"{k}={v}" for k, v in sorted(report["instances"].items())) or "none"
    _out(f"EC2: instances tagged hostfactory:provider={ctx.provider}: {total}")
    for rid, why in sorted(report["stuck"].items()):
        _out(f"STUCK {rid}: {why['what']} failed {why['attempts']} times "
             f"({', '.join(why['resources']) or '-'}): {why['error']}; retried by the plugin")
    if report["liveNotHeld"]:
        _out(f"EC2: {len(report['liveNotHeld'])} live instances are in no open request: "
             f"{', '.join(report['liveNotHeld'][:10])}"
             + (" ..." if len(report["liveNotHeld"]) > 10 else ""))
    return 0
