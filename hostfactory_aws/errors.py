"""The one exception hierarchy: every error a user sees names the thing to fix."""

from __future__ import annotations


class HostFactoryError(Exception):
    """Base class; its text is what lands in the ``message`` of the JSON answer."""


class InputError(HostFactoryError):
    """The JSON that HostFactory (or an admin) passed in is wrong."""


class ConfigError(HostFactoryError):
    """The config or templates file is wrong; the text names the file and field."""


class StateError(HostFactoryError):
    """The state file cannot be locked or written."""


class AwsError(HostFactoryError):
    """An AWS call failed; ``kind`` says what the caller may conclude from it.

    kind is one of: capacity, throttle, not_found, fatal, unknown (see aws.classify).
    """

    def __init__(self, operation: str, code: str, message: str, kind: str) -> None:
        self.operation = operation
        self.code = code
        self.aws_message = message
        self.kind = kind
        super().__init__(f"{operation} failed: {code}: {message}")
