"""The AWS error table, by what a failure means for a launch (pure: no boto3 here).

Every failed AWS call ends as one kind:

- ``not_sent``: nothing reached AWS (endpoint unreachable or refusing connections, a region
  that does not resolve, no credentials, parameters botocore refused to send). Nothing can
  have happened: the caller may forget its reservation and must name the cause.
- ``unknown``: sent, answer unknown (read timeout, dropped connection, any 5xx whatever its
  body, e.g. a proxy's or gateway's 502/504 HTML page). AWS may have acted: keep the record
  and let the instances' tags decide.
- ``throttle``: AWS still throttled after botocore's retries. Treated like ``unknown``.
- ``capacity``: EC2 had no room for this type/zone; the next subnet or type may have.
- ``quota``: an account quota is reached; no other subnet helps: stop, name the quota.
- ``not_found``: the resource named does not exist (or no longer does).
- ``fatal``: AWS refused before acting (any other 4xx): nothing happened, the text says what
  to fix.
"""

from __future__ import annotations

# Kinds after which AWS may have acted: a launch is kept and answered from the tags.
MAYBE_DONE = frozenset({"unknown", "throttle"})

CAPACITY_CODES = frozenset({
    "InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity", "InsufficientReservedInstancesCapacity",
    "InsufficientFreeAddressesInSubnet", "SpotMaxPriceTooLow", "UnfulfillableCapacity",
    "FleetCapacityExceeded", "ReservationCapacityExceeded", "Unsupported",
    "InsufficientCapacityOnHost",
})
# Account quotas: the code -> the quota (Service Quotas name) to raise.
QUOTA_CODES = {
    "VcpuLimitExceeded": "EC2 'Running On-Demand <family> instances' (vCPUs) for this "
                         "instance family",
    "InstanceLimitExceeded": "EC2 'Running On-Demand instances' for this instance type",
    "MaxSpotInstanceCountExceeded": "EC2 'All <family> Spot Instance Requests' (vCPUs)",
    "MaxSpotFleetRequestCountExceeded": "EC2 'Spot Fleet requests' (active fleets)",
    "FleetLimitExceeded": "EC2 'Fleets' (active EC2 Fleets)",
    "LaunchTemplateLimitExceeded": "EC2 'Launch templates'",
    "ResourceLimitExceeded": "the EC2 quota named in the message",
    "VolumeLimitExceeded": "EBS 'Storage for <volume type> volumes' (TiB)",
    "MaxIOPSLimitExceeded": "EBS 'IOPS for Provisioned IOPS SSD volumes'",
    "AddressLimitExceeded": "EC2 'EC2-VPC Elastic IPs'",
    "TagLimitExceeded": "the 50 tags per resource limit (fewer instanceTags)",
    "LimitExceeded": "the Auto Scaling quota named in the message (groups or launch "
                     "configurations)",
}
THROTTLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestThrottled",
    "TooManyRequestsException", "SlowDown", "EC2ThrottledException",
})
SERVER_CODES = frozenset({
    "ServiceUnavailable", "Unavailable", "InternalError", "InternalFailure",
    "ServerInternal", "RequestTimeout", "RequestTimeoutException",
})
NOT_FOUND_SUFFIXES = (".NotFound", ".Malformed.NotFound", ".NotFoundException")
# The template we just made may not be visible yet (EC2 is eventually consistent).
FRESH_TEMPLATE_CODES = frozenset({"InvalidLaunchTemplateId.NotFound",
                                  "InvalidLaunchTemplateName.NotFoundException"})
REFUSED_HINTS = {
    "AuthFailure": "check the credentials (AWS_CREDENTIAL_FILE / AWS_PROFILE / instance role)",
    "UnauthorizedOperation": "the IAM policy lacks this action; see docs/iam-policy.json",
    "AccessDenied": "the IAM policy lacks this action; see docs/iam-policy.json",
    "InvalidClientTokenId": "the access key is not valid",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
    "ExpiredToken": "the session credentials have expired",
    "OptInRequired": "the account is not subscribed to this service or AMI",
    "Blocked": "the account is blocked; contact AWS Support",
    "InvalidAMIID.NotFound": "check the template's imageId",
    "InvalidAMIID.Malformed": "check the template's imageId",
    "InvalidSubnetID.NotFound": "check the template's subnetId",
    "InvalidGroup.NotFound": "check the template's securityGroupIds",
    "InvalidKeyPair.NotFound": "check the template's keyName",
    "InvalidParameterValue": "check the template fields named in the message",
    "InvalidParameterCombination": "check the template fields named in the message",
}
# botocore exceptions raised with no request on the wire, and what to check for each.
NOT_SENT_EXCEPTIONS = {
    "EndpointConnectionError": "the endpoint cannot be reached: check AWS_REGION, "
                               "AWS_ENDPOINT_URL, DNS and the network",
    "ConnectTimeoutError": "no connection to the endpoint within AWS_CONNECTION_TIMEOUT_MS: "
                           "check AWS_REGION, AWS_ENDPOINT_URL and the network",
    "SSLError": "the TLS handshake with the endpoint failed: check AWS_ENDPOINT_URL and the "
                "CA bundle",
    "NoCredentialsError": "set AWS_CREDENTIAL_FILE or AWS_PROFILE in the config, or give "
                          "the host an instance role",
    "PartialCredentialsError": "the credentials are incomplete: check AWS_CREDENTIAL_FILE or "
                               "the profile",
    "ProfileNotFound": "check AWS_PROFILE in the config",
    "NoRegionError": "set AWS_REGION in the config",
    "InvalidRegionError": "check AWS_REGION in the config",
    "UnknownEndpointError": "check AWS_REGION in the config",
    "ParamValidationError": "a request parameter is invalid (a template field, most likely)",
    "InvalidEndpointConfigurationError": "check AWS_ENDPOINT_URL",
    "UnknownServiceError": "this botocore does not know the service: upgrade botocore",
}


UNREACHABLE_EXCEPTIONS = frozenset({"EndpointConnectionError", "ConnectTimeoutError",
                                    "SSLError"})


def classify(code: str, status: int | None = None) -> str:
    """AWS error code (and HTTP status, when known) -> the kind of failure (module doc)."""
    if code in CAPACITY_CODES:
        return "capacity"
    if code in QUOTA_CODES:
        return "quota"
    if code in THROTTLE_CODES:
        return "throttle"
    if code in SERVER_CODES or (status is not None and status >= 500):
        return "unknown"
    if code.isdigit() and int(code) >= 500:  # a bare HTTP status: a proxy's or gateway's page
        return "unknown"
    if code in REFUSED_HINTS:
        return "fatal"
    if code.endswith(NOT_FOUND_SUFFIXES):
        return "not_found"
    return "fatal"


def hint(code: str) -> str:
    """What to fix (refusals) or which quota to raise (quotas); empty if nothing to add."""
    if code in QUOTA_CODES:
        return f"an account quota is reached: ask AWS to raise {QUOTA_CODES[code]}"
    return REFUSED_HINTS.get(code, "")


def no_answer(kind: str, code: str) -> bool:
    """AWS never answered: the network, endpoint or proxy is the thing to check."""
    if kind == "not_sent":
        return code in UNREACHABLE_EXCEPTIONS
    return kind == "unknown" and not code[:1].isdigit() and code not in SERVER_CODES


def exception_kind(name: str, sent: bool) -> tuple[str, str]:
    """(kind, hint) of a botocore exception that carries no AWS answer.

    ``sent``: whether any attempt of the call may have reached AWS (a retry may end on a
    refused connection after an earlier attempt timed out reading: that is still unknown).
    """
    if name in NOT_SENT_EXCEPTIONS and not sent:
        return "not_sent", NOT_SENT_EXCEPTIONS[name]
    return "unknown", ""


def is_fresh_template_miss(code: str, message: str) -> bool:
    """Does this error say a launch template we just created is not there (yet)?"""
    if code in FRESH_TEMPLATE_CODES:
        return True
    text = message.lower()
    return code == "ValidationError" and "launch template" in text and (
        "does not exist" in text or "not found" in text)
