"""The admin's command, ``hostfactory-aws``: the five verbs, the demo, and offline checks."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .invoke_provider import VERBS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hostfactory-aws",
                                description="AWS provider plugin for IBM Symphony HostFactory "
                                            "and LSF resource connector.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    helps = {
        "getAvailableTemplates": "list templates as HostFactory sees them (JSON)",
        "requestMachines": "launch machines for a template (JSON in, request id out)",
        "getRequestStatus": "status of request/return ids (JSON)",
        "requestReturnMachines": "terminate machines HostFactory gives back (JSON)",
        "getReturnRequests": "machines the cloud is taking back (JSON)",
    }
    for verb in VERBS:
        v = sub.add_parser(verb, help=helps[verb])
        v.add_argument("-f", dest="file", help="input JSON file (default: standard input)")
    d = sub.add_parser("demo", help="run the whole HostFactory cycle against an in-process "
                                    "sandbox EC2 (needs the [sandbox] extra)")
    d.add_argument("--count", type=int, default=2, help="machines (units) per request")
    t = sub.add_parser("templates", help="the templates as a table (or --json)")
    t.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub.add_parser("validate", help="check the config and templates files offline")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in VERBS:
        from .invoke_provider import main as invoke

        return invoke([args.command] + (["-f", args.file] if args.file else []))
    if args.command == "demo":
        from .sandbox import run_demo

        return run_demo(machine_count=args.count)
    if args.command == "validate":
        return _validate()
    if args.command == "templates":
        return _templates(args.json)
    return 2


def _validate() -> int:
    from .context import resolve
    from .errors import HostFactoryError

    try:
        ctx = resolve()
        ctx.config  # noqa: B018 - loading is the check
        n = len(ctx.templates)
    except HostFactoryError as exc:
        sys.stderr.write(f"invalid: {exc}\n")
        return 1
    print(f"ok: {ctx.config_path} and {ctx.templates_path} ({n} templates)")
    return 0


def _templates(as_json: bool) -> int:
    from .invoke_provider import run

    code, answer = run(["getAvailableTemplates"], _Empty())
    if code or as_json:
        print(json.dumps(answer, indent=2))
        return code
    rows = [("TEMPLATE", "MAX", "AVAILABLE", "API", "TYPE", "NCPUS", "NRAM/MEM")]
    for t in answer["templates"]:
        attrs: dict[str, Any] = t["attributes"]
        mem = attrs.get("nram", attrs.get("mem", ["", ""]))[1]
        rows.append((t["templateId"], str(t["maxNumber"]), str(t.get("availableNumber", "-")),
                     t.get("providerApi", "RunInstances"), attrs.get("type", ["", ""])[1],
                     attrs.get("ncpus", ["", ""])[1], mem))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


class _Empty:
    def isatty(self) -> bool:
        return False

    def read(self) -> str:
        return "{}"
