"""The templates file: checking, normalising, and the form HostFactory reads back.

Pure functions over plain dicts. The one thing that needs AWS (filling ncpus/nram from the
instance type) is a function passed in, so this module never imports boto3.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from hostfactory_aws import tags as tagmod
from hostfactory_aws.errors import ConfigError
from hostfactory_aws.schema import checked, coerce_numeric_strings, load_json_file

INT_FIELDS = {"maxNumber", "rootDeviceVolumeSize", "iops", "percentOnDemand",
              "spotFleetRequestExpiry", "priority", "instancePendingTimeoutSec"}
FLOAT_FIELDS = frozenset({"maxSpotPrice"})
ATTR_TYPES = ("String", "Numeric", "Boolean")
SUPPORTED_APIS = {"RunInstances": {None}, "EC2Fleet": {"instant", "request", "maintain"},
                  "SpotFleet": {"request", "maintain"}, "ASG": {None}}
DEFAULT_EXPIRY_MINUTES = 30
# Fields of the admin's template echoed back to HostFactory (userData is never echoed).
ECHO_FIELDS = ("imageId", "vmType", "vmTypes", "subnetId", "priceType", "providerApi",
               "fleetType", "priority")

AllocationMap = dict[str, str]
SPOT_ALLOCATION: AllocationMap = {
    "lowestPrice": "lowest-price", "diversified": "diversified",
    "capacityOptimized": "capacity-optimized",
    "capacityOptimizedPrioritized": "capacity-optimized-prioritized",
    "priceCapacityOptimized": "price-capacity-optimized",
}
ONDEMAND_ALLOCATION: AllocationMap = {"lowestPrice": "lowest-price", "prioritized": "prioritized"}


def load_templates(path: str, cache: str | None = None) -> list[dict[str, Any]]:
    return parse_templates(load_json_file(path), path, cache)


def parse_templates(raw: Any, path: str, cache: str | None = None) -> list[dict[str, Any]]:
    """Check the whole file and return normalised templates in file order.

    ``cache``: the file remembering schema checks that passed (see validate.checked).

    All problems are reported at once, each as ``<file>: template '<id>': <field>: <what>``.
    """
    if isinstance(raw, list):  # tolerate a bare list of templates
        raw = {"templates": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a JSON object {{\"templates\": [...]}}")
    items = raw.get("templates")
    if isinstance(items, list):
        raw = {**raw, "templates": [coerce_numeric_strings(t, INT_FIELDS, FLOAT_FIELDS)
                                    if isinstance(t, dict) else t for t in items]}
    problems: list[str] = []
    for where, msg in checked(raw, "templates.schema.json", cache):
        problems.append(f"{path}: {_where(raw, where)}{msg}")
    if problems:
        raise ConfigError("; ".join(problems))
    seen: set[str] = set()
    out = []
    base = os.path.dirname(os.path.abspath(path))
    for tpl in raw["templates"]:
        tid = tpl["templateId"]
        if tid in seen:
            problems.append(f"{path}: template '{tid}': templateId: used twice")
        seen.add(tid)
        try:
            out.append(normalise(tpl, base))
        except ConfigError as exc:
            problems.append(f"{path}: template '{tid}': {exc}")
    if problems:
        raise ConfigError("; ".join(problems))
    return out


def _where(raw: dict[str, Any], path: list[Any]) -> str:
    if len(path) >= 2 and path[0] == "templates":
        tpl = raw["templates"][path[1]]
        tid = tpl.get("templateId") if isinstance(tpl, dict) else None
        name = f"template '{tid}'" if tid else f"template #{path[1] + 1}"
        field = ".".join(str(p) for p in path[2:])
        return f"{name}: {field}: " if field else f"{name}: "
    return ".".join(str(p) for p in path) + ": " if path else ""


def normalise(tpl: dict[str, Any], conf_dir: str) -> dict[str, Any]:
    """One schema-valid template -> the canonical form the rest of the plugin uses.

    Raises ConfigError naming the field for combinations AWS would reject.
    """
    t = dict(tpl)
    if "vmType" in t and "vmTypes" in t:
        raise ConfigError("vmType, vmTypes: give one or the other")
    if "vmTypes" in t:
        vm = t["vmTypes"]
        weights = {k: 1.0 for k in vm} if isinstance(vm, list) else dict(vm)
    elif "vmType" in t:
        weights = {t["vmType"]: 1.0}
    elif "launchTemplateId" in t:
        weights = {}
    else:
        raise ConfigError("vmType: required (or vmTypes, or a launchTemplateId that sets it)")
    if "imageId" not in t and "launchTemplateId" not in t:
        raise ConfigError("imageId: required (or a launchTemplateId that sets it)")
    weighted = any(w != 1 for w in weights.values())

    api = t.get("providerApi") or ("EC2Fleet" if len(weights) > 1 or weighted else "RunInstances")
    fleet_type = t.get("fleetType")
    if api in ("EC2Fleet", "SpotFleet"):
        fleet_type = fleet_type or ("instant" if api == "EC2Fleet" else "request")
    elif fleet_type:
        raise ConfigError(f"fleetType: only for EC2Fleet and SpotFleet, not {api}")
    if fleet_type not in SUPPORTED_APIS[api]:
        raise ConfigError(f"fleetType: '{fleet_type}' is not a fleet type of {api} "
                          f"(one of {', '.join(sorted(SUPPORTED_APIS[api] - {None}))})")
    price = t.get("priceType", "ondemand")
    if api == "RunInstances":
        if len(weights) > 1 or weighted:
            raise ConfigError("vmTypes: several types or weights need providerApi EC2Fleet, "
                              "SpotFleet or ASG; RunInstances launches one type")
        if price == "heterogeneous":
            raise ConfigError("priceType: heterogeneous needs a fleet providerApi, "
                              "RunInstances cannot mix spot and on-demand")
    if api == "SpotFleet" and "fleetRole" not in t:
        raise ConfigError("fleetRole: required for providerApi SpotFleet")
    if "fleetRole" in t and api != "SpotFleet":
        raise ConfigError(f"fleetRole: only for providerApi SpotFleet, not {api}")
    if "spotFleetRequestExpiry" in t and (api == "RunInstances" or fleet_type == "instant"):
        raise ConfigError("spotFleetRequestExpiry: only for request/maintain fleets and ASG; "
                          f"{api}{' instant' if fleet_type else ''} answers at once")
    if "percentOnDemand" in t and price != "heterogeneous":
        raise ConfigError("percentOnDemand: only with priceType heterogeneous")
    if "maxSpotPrice" in t and price == "ondemand":
        raise ConfigError("maxSpotPrice: only with priceType spot or heterogeneous")
    if "userData" in t and "userDataScript" in t:
        raise ConfigError("userData, userDataScript: give one or the other")
    if "userDataScript" in t:
        script = t["userDataScript"]
        script = script if os.path.isabs(script) else os.path.join(conf_dir, script)
        if not os.path.isfile(script):
            raise ConfigError(f"userDataScript: no such file {script}")
        t["userDataScript"] = script
    if ("volumeType" in t or "iops" in t) and "rootDeviceVolumeSize" not in t:
        raise ConfigError("rootDeviceVolumeSize: required when volumeType or iops is set")
    if "iops" in t and t.get("volumeType") not in ("io1", "io2", "gp3"):
        raise ConfigError("iops: only with volumeType io1, io2 or gp3")
    try:
        instance_tags = tagmod.parse_tag_string(t.get("instanceTags", ""))
    except ValueError as exc:
        raise ConfigError(f"instanceTags: {exc}") from exc
    reserved = [k for k in instance_tags if k.startswith(("hostfactory:", "aws:"))]
    if reserved:
        raise ConfigError(f"instanceTags: '{reserved[0]}' is reserved for the plugin or AWS")
    if t["maxNumber"] == 0:
        raise ConfigError("maxNumber: 0 would never launch anything; use -1 for unlimited")

    t["attributes"] = typed_attributes(t.get("attributes", {}))
    t["vmTypes"] = weights
    t["subnetIds"] = _as_list(t.get("subnetId"))
    t["securityGroupIds"] = _as_list(t.get("securityGroupIds"))
    t["providerApi"] = api
    t["fleetType"] = fleet_type
    t["priceType"] = price
    t["instanceTagsMap"] = instance_tags
    t["spotFleetRequestExpiry"] = t.get("spotFleetRequestExpiry", DEFAULT_EXPIRY_MINUTES)
    if "allocationStrategy" in t:
        t["allocationStrategy"] = SPOT_ALLOCATION.get(t["allocationStrategy"],
                                                      t["allocationStrategy"])
    if "allocationStrategyOnDemand" in t:
        t["allocationStrategyOnDemand"] = ONDEMAND_ALLOCATION.get(
            t["allocationStrategyOnDemand"], t["allocationStrategyOnDemand"])
    t["_source"] = tpl
    return t


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def typed_attributes(attrs: dict[str, Any]) -> dict[str, list[str]]:
    """Plain values or [type, value] pairs -> [type, value-as-string] pairs."""
    out: dict[str, list[str]] = {}
    for name, value in attrs.items():
        if isinstance(value, list):
            kind, val = value
            if kind == "Numeric":
                _check_numeric(name, val)
            out[name] = [kind, _text(val)]
        elif isinstance(value, bool):
            out[name] = ["Boolean", "true" if value else "false"]
        elif isinstance(value, (int, float)):
            out[name] = ["Numeric", _text(value)]
        else:
            out[name] = ["String", value]
    return out


def _check_numeric(name: str, value: Any) -> None:
    try:
        float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"attributes.{name}: {value!r} is declared Numeric but is not a "
                          "number") from None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def needs_fill(t: dict[str, Any], mem_key: str = "nram") -> bool:
    """True when HostFactory needs an attribute the admin left out."""
    attrs = t["attributes"]
    return bool(t["vmTypes"]) and any(k not in attrs for k in ("type", "ncpus", mem_key))


def fill_attributes(t: dict[str, Any], specs: dict[str, dict[str, Any]],
                    mem_key: str = "nram") -> dict[str, list[str]]:
    """Attributes with type/ncpus/ncores/memory filled from the first vmType's specs.

    What the admin wrote always wins; for mixed-type templates the first type speaks.
    """
    attrs = dict(t["attributes"])
    if not t["vmTypes"]:
        return attrs
    spec = specs.get(next(iter(t["vmTypes"])))
    if not spec:
        return attrs
    attrs.setdefault("type", ["String", spec["arch"]])
    attrs.setdefault("ncpus", ["Numeric", str(spec["ncpus"])])
    attrs.setdefault("ncores", ["Numeric", str(spec["ncores"])])
    attrs.setdefault(mem_key, ["Numeric", str(spec["nram"])])
    return attrs


def hf_template(t: dict[str, Any], held_units: float, attrs: dict[str, list[str]]) -> dict:
    """The getAvailableTemplates form of one template."""
    out: dict[str, Any] = {"templateId": t["templateId"], "maxNumber": t["maxNumber"]}
    if t["maxNumber"] >= 0:
        out["availableNumber"] = max(0, int(t["maxNumber"] - held_units))
    out["attributes"] = attrs
    source = t["_source"]
    for key in ECHO_FIELDS:
        if key in source:
            out[key] = source[key]
    return out


def by_id(templates: list[dict[str, Any]], template_id: str) -> dict[str, Any] | None:
    for t in templates:
        if t["templateId"] == template_id:
            return t
    return None


Lookup = Callable[[list[str]], dict[str, dict[str, Any]]]
