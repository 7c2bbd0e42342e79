"""Pure builders: a normalised template -> the parameters of RunInstances and launch templates.

Shared by every API module so that a template means the same machine whichever API runs it.
"""

from __future__ import annotations

import base64
import os
import re
from typing import Any

from hostfactory_aws import tags as tagmod

# Key of a template copy carrying LSF's requestMachines userData (key -> value) to export.
EXPORT_USER_DATA = "_exportUserData"
# Key of a template copy that boots as IBM's LSF plugins do: the plugin's user_data.sh (or
# the template's userDataScript) with IBM's placeholder replaced by these exports.
LSF_EXPORTS = "_lsfExports"
PLACEHOLDER = "%EXPORT_USER_DATA%"
LSF_BOOT_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "scripts", "user_data.sh")
_SHELL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHELLS = frozenset({"sh", "bash", "dash", "ksh", "zsh"})


def user_data(t: dict[str, Any]) -> str | None:
    if LSF_EXPORTS in t:
        return lsf_user_data(t)
    if "userDataScript" in t:
        with open(t["userDataScript"], encoding="utf-8") as fh:
            script: str | None = fh.read()
    else:
        script = t.get("userData") or None
    exports = t.get(EXPORT_USER_DATA)
    return export_user_data(script, exports) if exports else script


def lsf_exports(t: dict[str, Any], request_data: dict[str, Any], rc_account: str,
                provider: str, script_options: str) -> dict[str, Any]:
    """What IBM's LSF plugins export into the boot script, in their order.

    The template's userData pairs ("k=v;k2=v2"; a bare name is exported as is), the
    request's userData object, rc_account, template_id, clustername (SCRIPT_OPTIONS'
    clusterName=...), providerName. A later value of the same name wins.
    """
    out: dict[str, Any] = {}
    for piece in str(t.get("userData") or "").split(";"):
        name, sep, value = piece.strip().partition("=")
        if name.strip():
            out[name.strip()] = value if sep else None
    out.update(request_data)
    out["rc_account"] = rc_account
    out["template_id"] = t["templateId"]
    cluster = script_options.split("clusterName=", 1)[1].split() if (
        "clusterName=" in script_options) else []
    if cluster:
        out["clustername"] = cluster[0]
    out["providerName"] = provider
    return out


def lsf_user_data(t: dict[str, Any]) -> str:
    """The boot script as IBM's LSF plugins make it (see LSF_EXPORTS)."""
    path = t.get("userDataScript") or LSF_BOOT_SCRIPT
    with open(path, encoding="utf-8") as fh:
        script = fh.read()
    lines = export_lines(t[LSF_EXPORTS])
    if PLACEHOLDER in script:
        return script.replace(PLACEHOLDER, "\n".join(lines))
    return export_user_data(script, t[LSF_EXPORTS]) or ""


def shell_quote(text: str) -> str:
    """Single-quoted for sh: nothing inside is expanded, a ' becomes '\\''."""
    return "'" + text.replace("'", "'\\''") + "'"


def export_lines(values: dict[str, Any]) -> list[str]:
    """``export K='V'`` per key; ValueError naming the key if it cannot be exported safely."""
    lines = []
    for key, value in values.items():
        if not isinstance(key, str) or not _SHELL_NAME.match(key):
            raise ValueError(f"userData.{key}: not a shell variable name (letters, digits and "
                             "'_', not starting with a digit)")
        if value is None:  # IBM: a bare name in the template's userData is exported as is
            lines.append(f"export {key}")
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            text = str(value)
        else:
            raise ValueError(f"userData.{key}: must be a string or a number, "
                             f"not {type(value).__name__}")
        if "\0" in text:
            raise ValueError(f"userData.{key}: holds a NUL character")
        lines.append(f"export {key}={shell_quote(text)}")
    return lines


def export_user_data(script: str | None, values: dict[str, Any]) -> str | None:
    """LSF's userData as ``export`` lines right after the boot script's shebang line.

    No script: a bash script of just the exports. A script that is not a shell script
    (cloud-config, another interpreter) cannot take them: ValueError saying so.
    """
    if not values:
        return script
    block = "".join(line + "\n" for line in export_lines(values))
    if not script:
        return "#!/bin/bash\n" + block
    first, _, rest = script.partition("\n")
    if not _is_shell_shebang(first):
        raise ValueError("userData: the template's user data does not start with a shell "
                         "'#!' line (e.g. #!/bin/bash), so LSF's userData values cannot be "
                         "exported into it")
    return first + "\n" + block + rest


def _is_shell_shebang(line: str) -> bool:
    if not line.startswith("#!"):
        return False
    words = line[2:].strip().split()
    if not words:
        return False
    prog = os.path.basename(words[0])
    if prog == "env" and len(words) > 1:
        prog = os.path.basename(words[1])
    return prog in _SHELLS


def block_devices(t: dict[str, Any], root_device: str | None) -> list[dict[str, Any]]:
    if "rootDeviceVolumeSize" not in t or not root_device:
        return []
    ebs: dict[str, Any] = {"VolumeSize": t["rootDeviceVolumeSize"], "DeleteOnTermination": True,
                           "VolumeType": t.get("volumeType", "gp3")}
    if "iops" in t:
        ebs["Iops"] = t["iops"]
    if "encrypted" in t:
        ebs["Encrypted"] = t["encrypted"]
    return [{"DeviceName": root_device, "Ebs": ebs}]


def resource_tags(t: dict[str, Any], base: dict[str, str]) -> dict[str, str]:
    """The template's instanceTags plus ours; ours win, they are how we find things again."""
    return {**t["instanceTagsMap"], **base}


def instance_common(t: dict[str, Any], image_id: str | None, root_device: str | None,
                    tags: dict[str, str]) -> dict[str, Any]:
    """Fields that RunInstances and launch-template data share, with the same names."""
    p: dict[str, Any] = {}
    if image_id:
        p["ImageId"] = image_id
    if t.get("keyName"):
        p["KeyName"] = t["keyName"]
    if t.get("instanceProfile"):
        prof = t["instanceProfile"]
        p["IamInstanceProfile"] = {"Arn": prof} if prof.startswith("arn:") else {"Name": prof}
    devices = block_devices(t, root_device)
    if devices:
        p["BlockDeviceMappings"] = devices
    if "ebsOptimized" in t:
        p["EbsOptimized"] = t["ebsOptimized"]
    placement = {}
    if t.get("placementGroupName"):
        placement["GroupName"] = t["placementGroupName"]
    if t.get("tenancy"):
        placement["Tenancy"] = t["tenancy"]
    if placement:
        p["Placement"] = placement
    p["TagSpecifications"] = tagmod.tag_specs(["instance", "volume"], tags)
    return p


def spot_market(t: dict[str, Any]) -> dict[str, Any]:
    opts: dict[str, Any] = {"SpotInstanceType": "one-time",
                            "InstanceInterruptionBehavior": "terminate"}
    if "maxSpotPrice" in t:
        opts["MaxPrice"] = price(t["maxSpotPrice"])
    return {"MarketType": "spot", "SpotOptions": opts}


def run_instances_params(t: dict[str, Any], common: dict[str, Any], count: int,
                         subnet: str | None, token: str, data: str | None) -> dict[str, Any]:
    """One best-effort RunInstances call: MinCount 1, MaxCount count."""
    p = dict(common)
    p.update(MinCount=1, MaxCount=count, ClientToken=token)
    if t["vmTypes"]:
        p["InstanceType"] = next(iter(t["vmTypes"]))
    nics = network_interfaces(t, subnet)
    if nics:
        p["NetworkInterfaces"] = nics
    else:
        if subnet:
            p["SubnetId"] = subnet
        if t["securityGroupIds"]:
            p["SecurityGroupIds"] = t["securityGroupIds"]
    if data:
        p["UserData"] = data  # boto3 base64-encodes it for RunInstances
    if t["priceType"] == "spot":
        p["InstanceMarketOptions"] = spot_market(t)
    if t.get("launchTemplateId"):
        p["LaunchTemplate"] = launch_template_ref(t)
    return p


def launch_template_data(t: dict[str, Any], common: dict[str, Any],
                         data: str | None) -> dict[str, Any]:
    """LaunchTemplateData for fleets; instance type, subnet and market go in the fleet call."""
    p = {k: v for k, v in common.items() if k != "TagSpecifications"}
    p["TagSpecifications"] = [s for s in common["TagSpecifications"]
                              if s["ResourceType"] in ("instance", "volume")]
    nics = network_interfaces(t, None)  # the fleet's overrides give the subnet
    if nics:
        p["NetworkInterfaces"] = nics
    elif t["securityGroupIds"]:
        p["SecurityGroupIds"] = t["securityGroupIds"]
    if data:
        p["UserData"] = base64.b64encode(data.encode("utf-8")).decode("ascii")
    return p


def launch_template_ref(t: dict[str, Any]) -> dict[str, str]:
    return {"LaunchTemplateId": t["launchTemplateId"],
            "Version": str(t.get("launchTemplateVersion", "$Default"))}


def fleet_overrides(t: dict[str, Any]) -> list[dict[str, Any]]:
    """Instance types x subnets, each with its weight (and spot price cap, if any)."""
    out = []
    subnets = t["subnetIds"] or [None]
    types = t["vmTypes"] or {None: 1.0}
    for itype, weight in types.items():
        for subnet in subnets:
            o: dict[str, Any] = {}
            if itype:
                o["InstanceType"] = itype
                o["WeightedCapacity"] = float(weight)
            if subnet:
                o["SubnetId"] = subnet
            if "maxSpotPrice" in t and t["priceType"] != "ondemand":
                o["MaxPrice"] = price(t["maxSpotPrice"])
            if itype and itype in t.get("vmTypesPriority", {}):
                o["Priority"] = float(t["vmTypesPriority"][itype])
            out.append(o)
    return out


def on_demand_share(t: dict[str, Any]) -> float:
    """Fraction of capacity bought on demand, kept so that a lowered target keeps the mix.

    Symphony's percentOnDemand and LSF's onDemandTargetCapacityRatio (templates.py).
    """
    if "onDemandShare" in t:
        return float(t["onDemandShare"])
    return {"ondemand": 1.0, "spot": 0.0}.get(t["priceType"],
                                             int(t.get("percentOnDemand", 0)) / 100.0)


def on_demand_units(units: int, share: float) -> int:
    """IBM rounds the on-demand part up (Math.ceil), so a share never becomes zero."""
    import math

    return min(units, math.ceil(round(units * share, 9)))


def capacity_split(t: dict[str, Any], units: int) -> dict[str, Any]:
    """TargetCapacitySpecification for the template's priceType and on-demand share."""
    share = on_demand_share(t)
    spec: dict[str, Any] = {"TotalTargetCapacity": units}
    if t["priceType"] == "ondemand":
        spec["DefaultTargetCapacityType"] = "on-demand"
        spec["OnDemandTargetCapacity"] = units
    elif t["priceType"] == "spot" and share <= 0.0:
        spec["DefaultTargetCapacityType"] = "spot"
        spec["SpotTargetCapacity"] = units
    else:
        on_demand = on_demand_units(units, share)
        spec["DefaultTargetCapacityType"] = "spot"
        spec["OnDemandTargetCapacity"] = on_demand
        spec["SpotTargetCapacity"] = units - on_demand
    return spec


def spot_pools(t: dict[str, Any]) -> dict[str, Any]:
    """Symphony's poolsCount: how many of the cheapest pools a lowestPrice fleet spreads over."""
    if "poolsCount" not in t or t.get("allocationStrategy") != "lowest-price":
        return {}
    return {"InstancePoolsToUseCount": int(t["poolsCount"])}


def fleet_config_params(t: dict[str, Any], units: int) -> dict[str, Any]:
    """LSF's ec2FleetConfig: the admin's CreateFleet request for this many units.

    IBM's placeholders are replaced first ($LSF_TOTAL_TARGET_CAPACITY and the on-demand /
    spot parts from onDemandTargetCapacityRatio, rounded up); then TotalTargetCapacity is
    the request's, the ratio (when given) sets the split, and no part exceeds the total.
    """
    import json

    share = float(t.get("onDemandTargetCapacityRatio") or 0.0)
    on_demand = on_demand_units(units, share) if share else 0
    text = t["ec2FleetConfigText"]
    for name, value in (("$LSF_TOTAL_TARGET_CAPACITY", units),
                        ("$LSF_ONDEMAND_TARGET_CAPACITY", on_demand),
                        ("$LSF_SPOT_TARGET_CAPACITY", units - on_demand)):
        text = text.replace(name, str(value))
    params: dict[str, Any] = json.loads(text)
    spec = dict(params.get("TargetCapacitySpecification") or {})
    spec["TotalTargetCapacity"] = units
    if t.get("onDemandTargetCapacityRatio") is not None:
        spec["OnDemandTargetCapacity"], spec["SpotTargetCapacity"] = on_demand, units - on_demand
    for part in ("OnDemandTargetCapacity", "SpotTargetCapacity"):
        if part in spec:
            spec[part] = min(int(spec[part]), units)
    spec.setdefault("DefaultTargetCapacityType", "spot" if share < 1 else "on-demand")
    params["TargetCapacitySpecification"] = spec
    params.setdefault("Type", "instant")
    return params


def network_interfaces(t: dict[str, Any], subnet: str | None) -> list[dict[str, Any]]:
    """LSF's interfaceType efa / efaCount: EFA network interfaces, one per network card.

    With interfaces, the subnet and security groups go on the interface (EC2 refuses them
    beside it). No EFA asked: none, and the instance gets EC2's default interface.
    """
    if str(t.get("interfaceType", "")).lower() != "efa":
        return []
    count = max(1, int(t.get("efaCount") or 1))
    out = []
    for card in range(count):
        nic: dict[str, Any] = {"DeviceIndex": 0 if card == 0 else 1, "NetworkCardIndex": card,
                               "InterfaceType": "efa", "DeleteOnTermination": True}
        if subnet:
            nic["SubnetId"] = subnet
        if t["securityGroupIds"]:
            nic["Groups"] = list(t["securityGroupIds"])
        out.append(nic)
    return out


def top_up_template(t: dict[str, Any]) -> dict[str, Any]:
    """The on-demand half of IBM's heterogeneous: vmTypesOnDemand (else vmTypes), all
    on-demand, for the capacity Spot did not give."""
    types = t.get("vmTypesOnDemand") or t["vmTypes"]
    return {**t, "vmTypes": {k: t["vmTypes"].get(k, v) for k, v in types.items()},
            "priceType": "ondemand", "onDemandShare": 1.0, "topUpOnDemand": False}


def price(value: Any) -> str:
    return f"{float(value):.6f}".rstrip("0").rstrip(".")
