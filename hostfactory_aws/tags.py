"""Tag keys that mark what this plugin launched, and the filters that find it again.

Every resource is tagged at creation with these, so the truth can be rebuilt from AWS
alone; the provider tag is also the guard that keeps us from terminating anything else.
"""

from __future__ import annotations

PROVIDER = "hostfactory:provider"
REQUEST_ID = "hostfactory:requestId"
TEMPLATE_ID = "hostfactory:templateId"
RETURN_ID = "hostfactory:returnId"
RC_ACCOUNT = "RC_ACCOUNT"  # IBM's LSF plugins: the request's rc_account, "default" if none
DEFAULT_RC_ACCOUNT = "default"
INSTANCE_ID = "InstanceID"  # AWS_TAG_InstanceID: IBM tags instance and volumes with it
# What EC2 itself tags a host with when a fleet or group launches it (only AWS can write
# ``aws:`` tags): which fleet, Spot Fleet request or group it belongs to.
EC2_FLEET_ID = "aws:ec2:fleet-id"
SPOT_FLEET_ID = "aws:ec2spot:fleet-request-id"
GROUP_NAME = "aws:autoscaling:groupName"
FLEET_ID_TAGS = (EC2_FLEET_ID, SPOT_FLEET_ID)


def base_tags(provider: str, request_id: str, template_id: str) -> dict[str, str]:
    return {PROVIDER: provider, REQUEST_ID: request_id, TEMPLATE_ID: template_id}


def parse_tag_string(text: str) -> dict[str, str]:
    """``"k1=v1;k2=v2"`` (IBM's instanceTags form) -> dict; empty pieces are skipped."""
    out: dict[str, str] = {}
    for piece in (text or "").split(";"):
        piece = piece.strip()
        if not piece:
            continue
        key, sep, value = piece.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"'{piece}' is not of the form key=value")
        out[key.strip()] = value.strip()
    return out


def to_tag_string(tags: dict[str, str]) -> str:
    return ";".join(f"{k}={v}" for k, v in tags.items())


def as_aws(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def from_aws(tag_list: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tag_list or []}


def tag_specs(resource_types: list[str], tags: dict[str, str]) -> list[dict]:
    return [{"ResourceType": rt, "Tags": as_aws(tags)} for rt in resource_types]


def provider_filter(provider: str) -> dict:
    return {"Name": f"tag:{PROVIDER}", "Values": [provider]}
