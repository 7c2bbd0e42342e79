"""IBM's AWS_TAG_InstanceID: tag each new instance and its volumes InstanceID=<instance id>.

Done right after launch for the instances the call already knows (RunInstances, instant
EC2 Fleet); one DescribeVolumes and one CreateTags per instance (the value differs per
instance). Best effort, as in IBM's plugin: a failure is logged, the launch stands.
"""

from __future__ import annotations

import logging

from hostfactory_aws import tags as tagmod
from hostfactory_aws.errors import AwsError

log = logging.getLogger(__name__)
BATCH = 200


def tag_instance_ids(aws: object, instance_ids: list[str]) -> None:
    volumes: dict[str, list[str]] = {iid: [] for iid in instance_ids}
    try:
        for i in range(0, len(instance_ids), BATCH):
            for page in aws.paginate(  # type: ignore[attr-defined]
                    "ec2", "DescribeVolumes", Filters=[{
                        "Name": "attachment.instance-id",
                        "Values": instance_ids[i:i + BATCH]}]):
                for vol in page.get("Volumes", []):
                    for att in vol.get("Attachments", []):
                        if att.get("InstanceId") in volumes:
                            volumes[att["InstanceId"]].append(vol["VolumeId"])
        for iid, vols in volumes.items():
            aws.call("ec2", "CreateTags", Resources=[iid, *vols],  # type: ignore[attr-defined]
                     Tags=tagmod.as_aws({tagmod.INSTANCE_ID: iid}))
    except AwsError as exc:
        log.warning("AWS_TAG_InstanceID: tagging %s failed: %s", ",".join(instance_ids), exc)
