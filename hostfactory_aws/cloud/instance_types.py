"""Facts about instance types and images that never change, cached in the work dir.

The cache means getAvailableTemplates needs AWS only the first time a type is seen.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

from hostfactory_aws.errors import ConfigError, StateError
from hostfactory_aws.schema import read_json_dict
from hostfactory_aws.state import write_json_atomic

log = logging.getLogger(__name__)

ARCH = {"x86_64": "X86_64", "arm64": "ARM64", "i386": "X86", "x86_64_mac": "X86_64",
        "arm64_mac": "ARM64"}


def instance_specs(get_aws: Callable[[], Any], types: list[str],
                   cache_path: str) -> dict[str, dict[str, Any]]:
    """{type: {ncpus, ncores, nram, arch}} for the given types; AWS only for uncached ones."""
    cache = read_json_dict(cache_path)
    missing = sorted({t for t in types if t not in cache})
    if missing:
        aws = get_aws()
        for i in range(0, len(missing), 100):
            part = missing[i:i + 100]
            try:
                resp = aws.call("ec2", "DescribeInstanceTypes", InstanceTypes=part)
            except Exception as exc:
                if getattr(exc, "code", "") == "InvalidInstanceType":
                    raise ConfigError(f"vmType: EC2 does not know one of {', '.join(part)} "
                                      f"in region {aws.config['AWS_REGION']}") from exc
                raise
            for it in resp.get("InstanceTypes", []):
                archs = it.get("ProcessorInfo", {}).get("SupportedArchitectures", ["x86_64"])
                cache[it["InstanceType"]] = {
                    "ncpus": it["VCpuInfo"]["DefaultVCpus"],
                    "ncores": it["VCpuInfo"].get("DefaultCores", it["VCpuInfo"]["DefaultVCpus"]),
                    "nram": it["MemoryInfo"]["SizeInMiB"],
                    "arch": ARCH.get(archs[0], archs[0].upper()),
                }
        _save(cache_path, cache)
    return {t: cache[t] for t in types if t in cache}


def _save(path: str, cache: dict[str, Any]) -> None:
    """A cache that cannot be written costs one AWS call next time, not this call."""
    try:
        write_json_atomic(path, cache)
    except StateError as exc:
        log.warning("cache not saved: %s", exc)


def resolve_image(aws: Any, image_id: str) -> str:
    """An SSM parameter path (``/aws/service/...``) -> the AMI id it holds now."""
    path = image_id[len("resolve:ssm:"):] if image_id.startswith("resolve:ssm:") else image_id
    if not path.startswith("/"):
        return image_id
    resp = aws.call("ssm", "GetParameter", Name=path)
    return resp["Parameter"]["Value"]


def root_device_name(aws: Any, image_id: str, cache_path: str) -> str:
    """The AMI's root device name, needed to resize the root volume; cached per AMI."""
    cache = read_json_dict(cache_path)
    if image_id not in cache:
        resp = aws.call("ec2", "DescribeImages", ImageIds=[image_id])
        images = resp.get("Images") or []
        if not images:
            raise ConfigError(f"imageId: {image_id} not found in region "
                              f"{aws.config['AWS_REGION']}")
        cache[image_id] = images[0].get("RootDeviceName") or "/dev/xvda"
        _save(cache_path, cache)
    return cache[image_id]


def cache_file(work_dir: str, name: str) -> str:
    return os.path.join(work_dir, name)
