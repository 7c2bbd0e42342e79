"""A WSGI middleware that makes moto's server fail the way EC2 does, on demand.

The e2e tests run the real scripts as separate processes, so the only place to make AWS
misbehave is the wire. A rule matches one AWS action and fires a given number of times:

- ``after=False`` (default): answer an EC2-style XML error instead of calling moto, as EC2
  does when it throttles or refuses a call (nothing happened).
- ``after=True``: let moto really do the call, then throw its answer away and send an error:
  the call happened but the caller never hears of it (a lost reply).

``deny`` refuses an action until cleared, as EC2 does when the IAM policy lacks it.

In-process tests (mock_aws) have no wire: ``fail_on`` makes cloud/session.py's Aws.call
raise the AwsError it would raise for a refused, throttled or lost call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable
from xml.sax.saxutils import escape

from hostfactory_aws.admin.sandbox import request_action

REASONS = {400: "Bad Request", 403: "Forbidden", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass
class Rule:
    """One fault: which action, what error, how many more times, before or after the call."""

    action: str
    code: str
    status: int
    message: str
    times: int
    after: bool = False
    html: bool = False
    reply: bytes | None = None
    fired: int = 0
    params: dict[str, str] = field(default_factory=dict)


def gateway_page(status: int) -> bytes:
    """The HTML a proxy, load balancer or API gateway sends instead of AWS's XML."""
    reason = REASONS.get(status, "Error")
    return (f"<html><head><title>{status} {reason}</title></head><body><center><h1>{status} "
            f"{reason}</h1></center><hr><center>nginx</center></body></html>\n").encode()


def error_body(code: str, message: str) -> bytes:
    """The XML EC2 (query protocol) sends with an error."""
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>"
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            "</Error></Errors><RequestID>hf-fault-injected</RequestID></Response>").encode()


FOREVER = 2**31  # times: a rule that keeps firing until cleared


class FaultInjector:
    """Wraps a WSGI app; ``add`` a rule from a test, ``clear`` between tests."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.rules: list[Rule] = []
        self._lock = threading.Lock()

    def add(self, action: str, code: str = "RequestLimitExceeded", status: int = 400,
            times: int = 1, message: str = "", after: bool = False,
            html: bool = False, reply: bytes | None = None) -> Rule:
        """Fail the next ``times`` calls of ``action`` with ``code`` / HTTP ``status``;
        ``html``: answer a gateway's HTML page (no AWS error code at all) instead;
        ``reply``: answer this 200 body instead of calling moto (an EC2 reply that reports
        its failures inside, like an instant fleet's ``errorSet``)."""
        rule = Rule(action=action, code=code, status=status, times=times, after=after,
                    html=html, reply=reply,
                    message=message or f"injected {code} for {action}")
        with self._lock:
            self.rules.append(rule)
        return rule

    def deny(self, action: str) -> Rule:
        """Refuse ``action`` until cleared, as EC2 does when the IAM policy lacks it."""
        return self.add(action, "UnauthorizedOperation", status=403, times=FOREVER,
                        message="You are not authorized to perform this operation. "
                                "Encoded authorization failure message: x")

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _take(self, action: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.action == action and rule.fired < rule.times:
                    rule.fired += 1
                    return rule
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        action = request_action(environ)  # reads the body and puts it back for moto
        rule = self._take(action) if action else None
        if rule is None:
            return self.app(environ, start_response)
        if rule.after:
            self._run_and_discard(environ)
        if rule.reply is not None:
            start_response("200 OK", [("Content-Type", "text/xml"),
                                      ("Content-Length", str(len(rule.reply)))])
            return [rule.reply]
        body = gateway_page(rule.status) if rule.html else error_body(rule.code, rule.message)
        reason = REASONS.get(rule.status, "Error")
        ctype = "text/html" if rule.html else "text/xml"
        start_response(f"{rule.status} {reason}", [("Content-Type", ctype),
                                                   ("Content-Length", str(len(body)))])
        return [body]

    def _run_and_discard(self, environ: dict[str, Any]) -> None:
        """Let the wrapped app do the call for real; its answer never reaches the client."""
        def ignore(status: str, headers: list[Any], exc_info: Any = None) -> Callable:
            return lambda data: None

        result = self.app(environ, ignore)
        try:
            for _ in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


if TYPE_CHECKING:  # bench/ uses this module without pytest
    import pytest


def fail_on(monkeypatch: pytest.MonkeyPatch, operation: str,
            code: str = "UnauthorizedOperation", kind: str = "fatal", message: str = "") -> None:
    """Every ``operation`` in this process fails as Aws.call reports it (counted, nothing
    sent) while ``monkeypatch`` holds; every other operation reaches moto."""
    from hostfactory_aws.cloud.session import Aws
    from hostfactory_aws.errors import AwsError

    real = Aws.call

    def call(self: Aws, service: str, op: str, **params: Any) -> dict[str, Any]:
        if op == operation:
            self.calls[op] += 1
            raise AwsError(op, code, message or f"injected {code}", kind)
        return real(self, service, op, **params)

    monkeypatch.setattr(Aws, "call", call)
