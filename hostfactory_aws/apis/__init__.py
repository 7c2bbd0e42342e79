"""One module per AWS provisioning API, behind the same small interface.

Each module has:
  launch(ctx, t, request_id, units, tags) -> Launch   (raises AwsError if nothing launched)
  cleanup(ctx, record) -> None   (remove fleets/groups/templates once no machine is left)
A Launch is a plain dict: {"instances": {id: {"units", "name", "type"}}, "fleetIds": [...],
"errors": ["Code: message"], "launchTemplateId": str | None}.
"""

from __future__ import annotations

import importlib
from typing import Any

from .. import ec2_info, launch_spec
from ..context import Context

MODULES = {"RunInstances": "run_instances", "EC2Fleet": "ec2_fleet"}


def module_for(api: str) -> Any:
    return importlib.import_module(f"{__name__}.{MODULES[api]}")


def new_launch() -> dict[str, Any]:
    return {"instances": {}, "fleetIds": [], "errors": [], "launchTemplateId": None}


def prepare(ctx: Context, t: dict[str, Any], tags: dict[str, str]) -> tuple[dict, str | None]:
    """Common instance fields (image resolved, root device known) and the user data."""
    aws = ctx.aws
    image = t.get("imageId")
    if image:
        image = ec2_info.resolve_image(aws, image)
    root = t.get("rootDeviceName")
    if "rootDeviceVolumeSize" in t and not root and image:
        root = ec2_info.root_device_name(aws, image,
                                         ec2_info.cache_file(ctx.work_dir, "images.json"))
    common = launch_spec.instance_common(t, image, root, launch_spec.resource_tags(t, tags))
    return common, launch_spec.user_data(t)
