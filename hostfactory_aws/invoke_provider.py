"""The one entrypoint: ``invoke_provider.py VERB [-f FILE]`` prints exactly one JSON document.

Whatever happens, stdout carries one JSON document: the verb's answer (exit 0) or
``{"message": ...}`` (exit 1). While the verb runs, stdout points at stderr, so no stray
print from a library can corrupt the answer. Logs go to the log dir only.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # run as a file by scripts/*.sh: import the package, not its dir
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import json  # noqa: E402
import time  # noqa: E402

TYPE_CHECKING = False  # importing typing costs every call ~6 ms: annotations only
if TYPE_CHECKING:
    from typing import IO, Any

VERBS = {
    "getAvailableTemplates": "get_available_templates",
    "requestMachines": "request_machines",
    "getRequestStatus": "get_request_status",
    "requestReturnMachines": "request_return_machines",
    "getReturnRequests": "get_return_requests",
}
USAGE = f"usage: invoke_provider.py {{{'|'.join(VERBS)}}} [-f FILE]  (JSON input, else stdin)"


def read_input(args: list[str], stdin: IO[str]) -> Any:
    """The input JSON from ``-f FILE`` or standard input; empty input means ``{}``.

    Size, encoding and shape are checked by inputs.parse_document, whatever the bytes.
    """
    from hostfactory_aws.errors import InputError
    from hostfactory_aws.inputs import MAX_INPUT_BYTES, parse_document

    if args[:1] == ["-f"]:
        if len(args) != 2:
            raise InputError(USAGE)
        try:
            with open(args[1], "rb") as fh:
                raw = fh.read(MAX_INPUT_BYTES + 1)
        except OSError as exc:
            raise InputError(f"input file {args[1]}: {exc.strerror}") from exc
        where = args[1]
    elif args:
        raise InputError(f"unexpected arguments {' '.join(args)}; {USAGE}")
    else:
        where = "standard input"
        if stdin is None or stdin.isatty():
            raw = b""
        else:
            buffer = getattr(stdin, "buffer", None)
            raw = (buffer.read(MAX_INPUT_BYTES + 1) if buffer is not None  # a real stream
                   else stdin.read().encode("utf-8", "surrogateescape"))
    return parse_document(raw, where)


def dispatch(verb: str, data: dict[str, Any], ctx: Any) -> dict[str, Any]:
    import importlib

    module = importlib.import_module(f"hostfactory_aws.verbs.{VERBS[verb]}")
    return module.run(ctx, data)


def run(argv: list[str], stdin: IO[str] | None = None,
        env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """The whole call, minus printing: returns (exit code, answer)."""
    import logging

    from hostfactory_aws import deadline
    from hostfactory_aws.errors import AwsError, HostFactoryError

    deadline.begin()
    start = time.monotonic()
    log = logging.getLogger("hostfactory_aws")
    ctx = None
    verb = argv[0] if argv else ""
    try:
        if verb not in VERBS:
            from hostfactory_aws.errors import InputError

            raise InputError(f"unknown verb '{verb}'; {USAGE}")
        from hostfactory_aws.context import resolve

        ctx = resolve(env)
        from hostfactory_aws.logs import setup_logging

        setup_logging(ctx)
        data = read_input(argv[1:], stdin if stdin is not None else sys.stdin)
        logging.getLogger().setLevel(ctx.config["LogLevel"])
        answer = dispatch(verb, data, ctx)
        code = 0
    except HostFactoryError as exc:
        answer, code = {"message": str(exc)}, 1
        from hostfactory_aws.cloud.error_codes import MAYBE_DONE

        if isinstance(exc, AwsError) and exc.kind in MAYBE_DONE:
            answer["message"] += " (outcome unknown: nothing was assumed; ask again)"
    except Exception as exc:  # a bug: still one JSON document, details in the log
        log.exception("%s: unexpected error", verb)
        answer, code = {"message": f"internal error in {verb}: {type(exc).__name__}: {exc} "
                                   "(details in the plugin log)"}, 1
    if ctx is not None and logging.getLogger().handlers:
        _call_record(log, verb, code, answer, time.monotonic() - start, ctx)
    return code, answer


def _call_record(log: Any, verb: str, code: int, answer: dict[str, Any], seconds: float,
                 ctx: Any) -> None:
    """One line per call, with the version; a failure is logged at ERROR, whatever LogLevel,
    since every error message tells the admin the details are in the plugin log."""
    from hostfactory_aws import __version__

    aws = ctx._aws.summary() if ctx._aws is not None else "no AWS calls"
    if code == 0:
        log.info("%s %s -> ok in %.3fs, %s (v%s)", verb, _ids(answer), seconds, aws,
                 __version__)
        return
    root = log.root
    if not root.isEnabledFor(40):  # logging.ERROR: lift the level for this one line
        root.setLevel(40)
    log.error("%s %s -> FAILED in %.3fs, %s (v%s): %s", verb, _ids(answer), seconds, aws,
              __version__, answer.get("message"))


def _ids(answer: dict[str, Any]) -> str:
    if "requestId" in answer:
        return answer["requestId"]
    if isinstance(answer.get("requests"), list):
        return ",".join(r.get("requestId", r.get("machineId", "")) for r in answer["requests"]
                        )[:300]
    return ""


def main(argv: list[str] | None = None, exit_now: bool = False) -> int:
    """Print the answer; with ``exit_now`` the process ends the moment it is flushed.

    A kill while Python shuts down (about 100 ms of interpreter teardown) would otherwise
    land after HostFactory got its answer: nothing is left to do once the answer is out.
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:
        from hostfactory_aws import __version__

        sys.stdout.write(f"hostfactory-aws {__version__}\n")
        return 0
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # anything printed by accident goes to stderr, not HostFactory
    try:
        code, answer = run(argv)
    finally:
        sys.stdout = real_stdout
    # Indented for a person at a terminal; compact for HostFactory, which reads a pipe or a
    # file: indent= makes json use its pure-Python encoder, ~5x slower on 5,000 machines.
    indent = 2 if real_stdout.isatty() else None
    real_stdout.write(json.dumps(answer, indent=indent) + "\n")
    real_stdout.flush()
    if exit_now:
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    from hostfactory_aws.invoke_provider import main as _main

    sys.exit(_main(exit_now=True))
