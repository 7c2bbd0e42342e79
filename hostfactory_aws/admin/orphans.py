"""``hostfactory-aws orphans``: list this provider's orphans, and end them when asked."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable

from hostfactory_aws import state
from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import instances
from hostfactory_aws.errors import AwsError
from hostfactory_aws.orphans import age_text, find, terminate

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--terminate", action="store_true",
                   help="terminate the orphans listed (asks for confirmation)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--older-than", type=int, default=0, metavar="MINUTES",
                   help="only orphans launched more than MINUTES ago (default 0: all)")


def orphans_command(args: argparse.Namespace, stdin: Any = None,
                    out: Callable[[str], None] | None = None,
                    err: Callable[[str], None] | None = None) -> int:
    """``hostfactory-aws orphans``: list (and with --terminate, end) this provider's orphans.

    Works from one sweep and the state file; HostFactory's own list is not available here,
    so an empty state (lost work dir), or dirs that may not be HostFactory's (ctx.unsure),
    refuse to terminate anything. Exit 0 when there are none or all were terminated; 1 when
    orphans were listed (like a check), on any error, or when termination is declined.
    """
    from hostfactory_aws.context import resolve
    from hostfactory_aws.errors import HostFactoryError
    from hostfactory_aws.logs import setup_logging

    say = out or (lambda s: sys.stdout.write(s + "\n"))
    note = err or (lambda s: sys.stderr.write(s + "\n"))
    stdin = sys.stdin if stdin is None else stdin
    try:
        ctx = resolve()
        if args.terminate and ctx.unsure:
            note(f"refusing to terminate: {ctx.unsure}")
            return 1
        if ctx.unsure:
            note(f"warning: {ctx.unsure}")
        setup_logging(ctx, ctx.config["LogLevel"])
        note(f"sweeping {ctx.config['AWS_REGION']} for instances tagged "
             f"{tagmod.PROVIDER}={ctx.provider} ...")
        found = instances.sweep(ctx.aws, ctx.provider)
        snapshot = state.read(ctx.state_path, ctx.config["STATE_LOCK_TIMEOUT_SEC"])
        now = time.time()
        rows = [o for o in find(found, snapshot, ctx.provider, now)
                if o["ageSeconds"] >= max(0, args.older_than) * 60]
    except HostFactoryError as exc:
        note(f"error: {exc}")
        return 1
    note(f"{len(found)} tagged instances, {len(rows)} orphans (state {ctx.state_path})")
    answer: dict[str, Any] = {"provider": ctx.provider, "orphans": rows}
    if not args.json:
        say(table(rows) if rows else "no orphan instances")
    if not rows or not args.terminate:
        if args.json:
            say(json.dumps(answer, indent=2))
        return 1 if rows else 0  # like a check: orphans found is a problem to look at

    code = _terminate_confirmed(ctx, rows, found, snapshot, args.yes, stdin, note, answer)
    if args.json:
        say(json.dumps(answer, indent=2))
    return code


def _terminate_confirmed(ctx: Any, rows: list[dict[str, Any]], found: dict[str, Any],
                         snapshot: dict[str, Any], assume_yes: bool, stdin: Any,
                         note: Callable[[str], None], answer: dict[str, Any]) -> int:
    if not any(r.get("kind") == "create" and not r.get("rebuilt")
               for r in snapshot.get("requests", {}).values()):
        note(f"refusing to terminate: the state file {ctx.state_path} holds no request "
             "(new or lost work dir?), so machines HostFactory still holds cannot be told "
             "from orphans. Check them, then terminate by hand.")
        answer["error"] = "state file holds no request; nothing terminated"
        return 1
    if not assume_yes:
        note(f"terminate these {len(rows)} instances? type 'yes' to confirm: ")
        reply = (stdin.readline() if stdin is not None else "").strip()
        if reply != "yes":
            note("not confirmed: nothing terminated")
            answer["error"] = "not confirmed; nothing terminated"
            return 1
    log.warning("orphans command: terminating %d orphans: %s", len(rows),
                [r["instanceId"] for r in rows])
    try:
        done, refused = terminate(ctx.aws, rows, found, ctx.provider)
    except AwsError as exc:
        note(f"error: {exc}")
        answer["error"] = str(exc)
        return 1
    answer["terminated"], answer["refused"] = done, refused
    note(f"terminating {len(done)} instances: {' '.join(done) or '-'}")
    for iid, why in refused.items():
        note(f"{iid}: {why}")
        log.error("orphans command: %s: %s", iid, why)
    return 1 if refused else 0


def table(rows: list[dict[str, Any]]) -> str:
    head = ("INSTANCE", "TYPE", "STATE", "LAUNCHED (UTC)", "REQUEST", "TEMPLATE", "AGE")
    lines = [head] + [(r["instanceId"], r["instanceType"] or "-", r["state"],
                       _when(r["launchTime"]), r["requestId"] or "-", r["templateId"] or "-",
                       age_text(r["ageSeconds"])) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
                     for line in lines)


def _when(ts: int) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
