"""The AWS error table (cloud/error_codes.py) and how session.py applies it to botocore's
exceptions: what each failure lets a launch conclude."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from hostfactory_aws.cloud import error_codes, session
from hostfactory_aws.errors import AwsError


@pytest.mark.parametrize("code, kind", [
    ("InsufficientInstanceCapacity", "capacity"),
    ("InsufficientFreeAddressesInSubnet", "capacity"),
    ("SpotMaxPriceTooLow", "capacity"),
    ("UnfulfillableCapacity", "capacity"),
    ("Unsupported", "capacity"),  # this type is not offered in this zone: try the next
    ("ReservationCapacityExceeded", "capacity"),
    ("VcpuLimitExceeded", "quota"),  # no other subnet helps: stop, name the quota
    ("InstanceLimitExceeded", "quota"),
    ("MaxSpotInstanceCountExceeded", "quota"),
    ("MaxSpotFleetRequestCountExceeded", "quota"),
    ("RequestLimitExceeded", "throttle"),
    ("Throttling", "throttle"),
    ("InternalError", "unknown"),
    ("ServiceUnavailable", "unknown"),
    ("502", "unknown"),  # a proxy's or gateway's HTML page: botocore's code is the status
    ("504", "unknown"),
    ("InvalidInstanceID.NotFound", "not_found"),
    ("InvalidFleetId.NotFound", "not_found"),
    ("InvalidLaunchTemplateId.NotFound", "not_found"),
    ("InvalidSpotFleetRequestId.NotFound", "not_found"),
    ("InvalidInstanceID.Malformed.NotFound", "not_found"),
    ("AuthFailure", "fatal"),
    ("UnauthorizedOperation", "fatal"),
    ("InvalidAMIID.NotFound", "fatal"),  # a config problem, not a vanished resource
    ("InvalidSubnetID.NotFound", "fatal"),
    ("InvalidParameterValue", "fatal"),
    ("SomethingNobodyHasSeen", "fatal"),
    ("403", "fatal"),
])
def test_classify(code: str, kind: str) -> None:
    assert error_codes.classify(code) == kind


@pytest.mark.parametrize("code", ["SomethingNobodyHasSeen", "Bad Gateway", "AccessDenied"])
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_any_5xx_is_unknown_whatever_its_code(code: str, status: int) -> None:
    assert error_codes.classify(code, status) == "unknown"


def test_capacity_code_with_a_server_status_still_moves_on() -> None:
    assert error_codes.classify("InsufficientInstanceCapacity", 500) == "capacity"


def test_quota_hint_names_the_quota() -> None:
    assert "Running On-Demand" in error_codes.hint("VcpuLimitExceeded")
    assert "raise" in error_codes.hint("MaxSpotInstanceCountExceeded")


@pytest.mark.parametrize("code, message, fresh", [
    ("InvalidLaunchTemplateId.NotFound", "no such template", True),
    ("ValidationError", "The specified launch template, with template ID lt-1, does not "
                        "exist.", True),
    ("ValidationError", "Max bound must be >= min", False),
    ("InvalidAMIID.NotFound", "x", False),
])
def test_fresh_template_miss(code: str, message: str, fresh: bool) -> None:
    assert error_codes.is_fresh_template_miss(code, message) is fresh


def client_error(code: str, message: str, status: int | None = None) -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": message}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, "RunInstances")  # type: ignore[arg-type]


def test_client_error_becomes_aws_error_with_hint() -> None:
    err = session._to_aws_error("RunInstances", client_error(
        "InvalidAMIID.NotFound", "The image id does not exist", 400), sent=True)
    assert isinstance(err, AwsError)
    assert (err.operation, err.code, err.kind) == ("RunInstances", "InvalidAMIID.NotFound",
                                                   "fatal")
    assert "imageId" in err.aws_message
    assert str(err).startswith("RunInstances failed: InvalidAMIID.NotFound: ")


def test_gateway_page_is_unknown_and_says_so() -> None:
    err = session._to_aws_error("RunInstances", client_error("502", "Bad Gateway", 502),
                                sent=True)
    assert err.kind == "unknown"
    assert "proxy or gateway" in err.aws_message


def test_quota_error_says_which_quota_to_raise() -> None:
    err = session._to_aws_error("RunInstances", client_error("VcpuLimitExceeded", "x", 400),
                                sent=True)
    assert err.kind == "quota" and "Running On-Demand" in str(err)


@pytest.mark.parametrize("exc", [
    EndpointConnectionError(endpoint_url="https://ec2.example"),
    ConnectTimeoutError(endpoint_url="https://ec2.example"),
    NoCredentialsError(),
    ParamValidationError(report="MaxCount: invalid type"),
])
def test_nothing_sent_is_not_sent_and_names_the_cause(exc: Exception) -> None:
    err = session._to_aws_error("RunInstances", exc, sent=False)
    assert err.kind == "not_sent"
    assert "not sent to AWS" in str(err)


def test_refused_connection_after_a_timed_out_attempt_is_still_unknown() -> None:
    """A retry that ends on a refused connection: the first attempt may have launched."""
    err = session._to_aws_error("RunInstances",
                                EndpointConnectionError(endpoint_url="https://x"), sent=True)
    assert err.kind == "unknown"


@pytest.mark.parametrize("exc", [
    ReadTimeoutError(endpoint_url="https://ec2.example"),
    ConnectionClosedError(endpoint_url="https://ec2.example"),
])
def test_sent_without_answer_is_unknown(exc: Exception) -> None:
    assert session._to_aws_error("RunInstances", exc, sent=False).kind == "unknown"


def test_no_credentials_says_where_to_set_them() -> None:
    err = session._to_aws_error("DescribeInstances", NoCredentialsError(), sent=False)
    assert "AWS_CREDENTIAL_FILE" in str(err)
