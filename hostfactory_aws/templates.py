"""The templates file: checking, normalising, and the form HostFactory reads back.

Pure functions over plain dicts. The one thing that needs AWS (filling ncpus/nram from the
instance type) is a function passed in, so this module never imports boto3.
"""

from __future__ import annotations

import os
import re

from hostfactory_aws import tags as tagmod
from hostfactory_aws.errors import ConfigError
from hostfactory_aws.schema import (
    checked,
    coerce_numeric_strings,
    first_time,
    load_json_file,
    unknown_keys,
)

TYPE_CHECKING = False  # importing typing costs every call ~6 ms: annotations only
if TYPE_CHECKING:
    from typing import Any

INT_FIELDS = {"maxNumber", "rootDeviceVolumeSize", "iops", "percentOnDemand",
              "spotFleetRequestExpiry", "priority", "poolsCount", "efaCount",
              "durationInHours", "ttl", "instancePendingTimeoutSec"}
FLOAT_FIELDS = frozenset({"maxSpotPrice", "spotPrice", "onDemandTargetCapacityRatio",
                          "marketSpotPrice"})
ATTR_TYPES = ("String", "Numeric", "Boolean")
SUPPORTED_APIS = {"RunInstances": {None}, "EC2Fleet": {"instant", "request", "maintain"},
                  "SpotFleet": {"request", "maintain"}, "ASG": {None}}
DEFAULT_EXPIRY_MINUTES = 30
# Fields of the admin's template echoed back to HostFactory (userData is never echoed).
ECHO_FIELDS = ("imageId", "vmType", "vmTypes", "subnetId", "priceType", "providerApi",
               "fleetType", "priority")
SCHEMA = "templates.schema.json"
TEMPLATE_DEF = ("$defs", "template")
# IBM keys with nothing to act on here, and why (docs/ibm-keys.md has the full table).
NO_EFFECT = {
    "durationInHours": "Spot blocks (defined-duration Spot) were retired by AWS in 2022",
    "ttl": "LSF ends hosts itself (requestReturnMachines); EC2 has no instance lifetime",
    "gpuextend": "an LSF scheduling attribute read by LSF, not by the provider",
    "computeUnit": "an LSF capacity unit read by LSF, not by the provider",
    "marketSpotPrice": "informational in IBM's plugin (a price it looked up)",
}

AllocationMap = dict[str, str]
SPOT_ALLOCATION: AllocationMap = {
    "lowestPrice": "lowest-price", "diversified": "diversified",
    "capacityOptimized": "capacity-optimized",
    "capacityOptimizedPrioritized": "capacity-optimized-prioritized",
    "priceCapacityOptimized": "price-capacity-optimized",
}
ONDEMAND_ALLOCATION: AllocationMap = {"lowestPrice": "lowest-price", "prioritized": "prioritized"}


# LSF's ec2FleetConfig placeholders, replaced per request (IBM: on-demand share rounded up).
PLACEHOLDERS = ("$LSF_TOTAL_TARGET_CAPACITY", "$LSF_ONDEMAND_TARGET_CAPACITY",
                "$LSF_SPOT_TARGET_CAPACITY")


class TemplateFile:
    """A templates file read leniently: the good templates, and each bad one's error.

    A template in error is left out alone; an unknown key is a warning, never an error.
    """

    def __init__(self, good: list[dict[str, Any]], bad: dict[str, str],
                 warnings: list[str]) -> None:
        self.good = good
        self.bad = bad  # template id -> "<file>: template '<id>': <field>: <what>"
        self.warnings = warnings

    def problems(self) -> list[str]:
        """Everything validate and doctor report: errors first, then unknown keys."""
        return list(self.bad.values()) + self.warnings


def log_problems(tf: TemplateFile, cache: str | None = None) -> None:
    """Every load: templates left out (ERROR), unknown keys and skipped tags (WARNING).
    Once per change of the file (``cache``: schema.first_time): keys with no effect here."""
    import logging

    log = logging.getLogger(__name__)
    notes = [f"template '{t['templateId']}': {key}: accepted, no effect here: {NO_EFFECT[key]}"
             for t in tf.good for key in t["noEffect"]]
    if notes and first_time(cache, "\n".join(notes)):
        for note in notes:
            log.info("%s (docs/ibm-keys.md)", note)
    for msg in tf.bad.values():
        log.error("%s (template left out; the others are served)", msg)
    for msg in tf.warnings:
        log.warning("%s (ignored; hostfactory-aws validate lists every such key)", msg)
    for t in tf.good:
        for key in t["skippedTags"]:
            log.warning("template '%s': instanceTags: '%s' skipped: AWS reserves the "
                        "'aws:' prefix", t["templateId"], key)


def load_template_file(path: str, cache: str | None = None) -> TemplateFile:
    return parse_template_file(load_json_file(path), path, cache)


def load_templates(path: str, cache: str | None = None) -> list[dict[str, Any]]:
    return parse_templates(load_json_file(path), path, cache)


def parse_templates(raw: Any, path: str, cache: str | None = None) -> list[dict[str, Any]]:
    """Strict form (validate, tests): every problem, unknown keys included, is an error."""
    tf = parse_template_file(raw, path, cache)
    if tf.problems():
        raise ConfigError("; ".join(tf.problems()))
    return tf.good


def parse_template_file(raw: Any, path: str, cache: str | None = None) -> TemplateFile:
    """Check the file; normalise each template on its own; report the rest.

    ``cache``: the file remembering schema checks (see schema.checked). Messages read
    ``<file>: template '<id>': <field>: <what>``. Only a file that is not a list of
    templates at all is a ConfigError here.
    """
    if isinstance(raw, list):  # tolerate a bare list of templates
        raw = {"templates": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a JSON object {{\"templates\": [...]}}")
    items = raw.get("templates")
    if not isinstance(items, list):
        raise ConfigError(f"{path}: 'templates' is required, a list of templates")
    items = [coerce_numeric_strings(t, INT_FIELDS, FLOAT_FIELDS) if isinstance(t, dict) else t
             for t in items]
    raw = {**raw, "templates": items}
    warnings = [f"{path}: {m}" for m in unknown_keys(raw, SCHEMA)]
    by_index: dict[int, list[str]] = {}
    for where, msg in checked(raw, SCHEMA, cache):
        if len(where) >= 2 and where[0] == "templates":
            by_index.setdefault(where[1], []).append(f"{path}: {_where(raw, where)}{msg}")
    bad: dict[str, str] = {}
    good = []
    seen: set[str] = set()
    base = os.path.dirname(os.path.abspath(path))
    for i, tpl in enumerate(items):
        name = _name(tpl, i)
        unknown = [f"{path}: {name}: {m}" for m in unknown_keys(tpl, SCHEMA, TEMPLATE_DEF)
                   ] if isinstance(tpl, dict) else []
        warnings += unknown
        if i in by_index:  # its unknown keys too: a misspelt key is often why it is bad
            bad[_key(tpl, i)] = "; ".join(by_index[i] + unknown)
            continue
        tid = tpl["templateId"]
        if tid in seen:  # which one was meant is unknown: every copy is left out
            bad[tid] = f"{path}: {name}: templateId: used twice"
            continue
        seen.add(tid)
        try:
            good.append(normalise(tpl, base))
        except ConfigError as exc:
            bad[tid] = f"{path}: {name}: {exc}"
    return TemplateFile([t for t in good if t["templateId"] not in bad], bad, warnings)


def _name(tpl: Any, i: int) -> str:
    tid = tpl.get("templateId") if isinstance(tpl, dict) else None
    return f"template '{tid}'" if isinstance(tid, str) and tid else f"template #{i + 1}"


def _key(tpl: Any, i: int) -> str:
    tid = tpl.get("templateId") if isinstance(tpl, dict) else None
    return tid if isinstance(tid, str) and tid else f"#{i + 1}"


def _where(raw: dict[str, Any], path: list[Any]) -> str:
    if len(path) >= 2 and path[0] == "templates":
        name = _name(raw["templates"][path[1]], path[1])
        field = ".".join(str(p) for p in path[2:])
        return f"{name}: {field}: " if field else f"{name}: "
    return ".".join(str(p) for p in path) + ": " if path else ""


def _weights(value: Any, field: str) -> dict[str, float]:
    """vmTypes / vmTypesOnDemand: {type: weight}, [types], or IBM's "a,b" string."""
    if isinstance(value, dict):
        return {k.strip(): float(v) for k, v in value.items()}
    if isinstance(value, str):
        value = [v for v in value.split(",")]
    names = [v.strip() for v in value if v.strip()]
    if not names:
        raise ConfigError(f"{field}: no instance type given")
    return {n: 1.0 for n in names}


def _api(t: dict[str, Any], weights: dict[str, float], price: str) -> str:
    """IBM's rule when providerApi is not given.

    An ec2FleetConfig file is an EC2 Fleet; Symphony's spot templates name a fleetRole and
    go through Spot Fleet; a heterogeneous template (spot first, on-demand for the rest)
    is an instant EC2 Fleet; several types or weights need a fleet; else RunInstances.
    """
    if t.get("providerApi"):
        return t["providerApi"]
    if t.get("ec2FleetConfig"):
        return "EC2Fleet"
    if price == "heterogeneous" and "percentOnDemand" not in t:
        return "EC2Fleet"
    if price in ("spot", "heterogeneous") and t.get("fleetRole"):
        return "SpotFleet"
    weighted = any(w != 1 for w in weights.values())
    if len(weights) > 1 or weighted or t.get("onDemandTargetCapacityRatio") is not None \
            or "percentOnDemand" in t:
        return "EC2Fleet"
    return "RunInstances"


def normalise(tpl: dict[str, Any], conf_dir: str) -> dict[str, Any]:
    """One schema-valid template -> the canonical form the rest of the plugin uses.

    IBM's Symphony and LSF keys are read with IBM's meaning (docs/ibm-keys.md). Raises
    ConfigError naming the field for combinations AWS would reject.
    """
    t = dict(tpl)
    if "vmType" in t and "vmTypes" in t:
        raise ConfigError("vmType, vmTypes: give one or the other")
    if "vmTypes" in t:
        weights = _weights(t["vmTypes"], "vmTypes")
    elif "vmType" in t:
        weights = _weights(t["vmType"], "vmType")  # LSF: "t2.micro,t3.micro"
    elif "launchTemplateId" in t or "ec2FleetConfig" in t:
        weights = {}
    else:
        raise ConfigError("vmType: required (or vmTypes, or a launchTemplateId that sets it)")
    if "imageId" not in t and "launchTemplateId" not in t and "ec2FleetConfig" not in t:
        raise ConfigError("imageId: required (or a launchTemplateId that sets it)")
    weighted = any(w != 1 for w in weights.values())
    if "spotPrice" in t:  # LSF: a bid price makes the template spot
        if "maxSpotPrice" in t:
            raise ConfigError("spotPrice, maxSpotPrice: give one or the other")
        t["maxSpotPrice"] = t["spotPrice"]
    price = t.get("priceType") or ("spot" if "spotPrice" in t else "ondemand")
    on_demand_share = _on_demand_share(t, price)

    api = _api(t, weights, price)
    fleet_type = t.get("fleetType")
    if "ec2FleetConfig" in t:
        t["ec2FleetConfig"] = _conf_file(t["ec2FleetConfig"], conf_dir, "ec2FleetConfig")
        t["ec2FleetConfigText"], doc = _fleet_config_text(t["ec2FleetConfig"])
        if api != "EC2Fleet":
            raise ConfigError(f"ec2FleetConfig: a CreateFleet request, not for {api}")
        fleet_type = fleet_type or doc.get("Type", "instant")
    if api in ("EC2Fleet", "SpotFleet"):
        fleet_type = fleet_type or ("instant" if api == "EC2Fleet" else "request")
    elif fleet_type:
        raise ConfigError(f"fleetType: only for EC2Fleet and SpotFleet, not {api}")
    if fleet_type not in SUPPORTED_APIS[api]:
        raise ConfigError(f"fleetType: '{fleet_type}' is not a fleet type of {api} "
                          f"(one of {', '.join(sorted(SUPPORTED_APIS[api] - {None}))})")
    top_up = price == "heterogeneous" and "percentOnDemand" not in t
    if top_up and (api, fleet_type) != ("EC2Fleet", "instant"):
        raise ConfigError(f"priceType: heterogeneous (Spot first, On-Demand for what Spot "
                          f"does not give) runs as an instant EC2 Fleet, not {api}"
                          f"{' ' + fleet_type if fleet_type else ''}; set percentOnDemand "
                          "for a fixed On-Demand share instead")
    if api == "RunInstances":
        if len(weights) > 1 or weighted:
            raise ConfigError("vmTypes: several types or weights need providerApi EC2Fleet, "
                              "SpotFleet or ASG; RunInstances launches one type")
        if on_demand_share not in (0.0, 1.0):
            raise ConfigError("percentOnDemand: a mix of spot and on-demand needs a fleet "
                              "providerApi; RunInstances cannot mix them")
    if api == "SpotFleet" and "fleetRole" not in t:
        raise ConfigError("fleetRole: required for providerApi SpotFleet")
    if "spotFleetRequestExpiry" in t and "requestValidity" in t:
        raise ConfigError("spotFleetRequestExpiry, requestValidity: give one or the other")
    if "requestValidity" in t:
        t["spotFleetRequestExpiry"] = _hh_mm(t["requestValidity"])
    if "maxSpotPrice" in t and price == "ondemand":
        raise ConfigError("maxSpotPrice: only with priceType spot or heterogeneous")
    if "userData" in t and "userDataScript" in t:
        raise ConfigError("userData, userDataScript: give one or the other")
    if "userDataScript" in t:
        t["userDataScript"] = _conf_file(t["userDataScript"], conf_dir, "userDataScript")
    if "iops" in t and t.get("volumeType") not in ("io1", "io2", "gp3"):
        raise ConfigError("iops: only with volumeType io1, io2 or gp3")
    if ("volumeType" in t or "iops" in t) and "rootDeviceVolumeSize" not in t:
        raise ConfigError("rootDeviceVolumeSize: required when volumeType or iops is set")
    if t.get("efaCount") and str(t.get("interfaceType", "efa")).lower() != "efa":
        raise ConfigError("efaCount: only with interfaceType efa")
    instance_tags, skipped = _instance_tags(t.get("instanceTags", ""))
    for key in ("vmTypesOnDemand", "vmTypesPriority"):
        if key in t:
            unknown = set(_weights(t[key], key)) - set(weights)
            if key == "vmTypesPriority" and unknown:
                raise ConfigError(f"{key}: {', '.join(sorted(unknown))} not in vmTypes")

    t["attributes"] = typed_attributes(t.get("attributes", {}))
    t["vmTypes"] = weights
    t["subnetIds"] = _as_list(t.get("subnetId"))
    t["securityGroupIds"] = _as_list(t.get("securityGroupIds"))  # LSF's [""] is none
    t["providerApi"] = api
    t["fleetType"] = fleet_type
    t["priceType"] = price
    t["onDemandShare"] = on_demand_share
    t["topUpOnDemand"] = top_up
    if "vmTypesOnDemand" in t:
        t["vmTypesOnDemand"] = _weights(t["vmTypesOnDemand"], "vmTypesOnDemand")
    if "vmTypesPriority" in t:
        t["vmTypesPriority"] = {k: v for k, v in dict(t["vmTypesPriority"]).items()}
    t["instanceTagsMap"] = instance_tags
    t["skippedTags"] = skipped
    t["spotFleetRequestExpiry"] = t.get("spotFleetRequestExpiry", DEFAULT_EXPIRY_MINUTES)
    if "allocationStrategy" in t:
        t["allocationStrategy"] = SPOT_ALLOCATION.get(t["allocationStrategy"],
                                                      t["allocationStrategy"])
    if "allocationStrategyOnDemand" in t:
        t["allocationStrategyOnDemand"] = ONDEMAND_ALLOCATION.get(
            t["allocationStrategyOnDemand"], t["allocationStrategyOnDemand"])
    t["noEffect"] = sorted(NO_EFFECT.keys() & tpl.keys())
    t["_source"] = tpl
    return t


def _on_demand_share(t: dict[str, Any], price: str) -> float:
    """Fraction bought On-Demand: Symphony's percentOnDemand, LSF's ratio (rounded up)."""
    if "percentOnDemand" in t and t.get("onDemandTargetCapacityRatio") is not None:
        raise ConfigError("percentOnDemand, onDemandTargetCapacityRatio: give one or the other")
    if "percentOnDemand" in t:
        if price == "ondemand":
            raise ConfigError("percentOnDemand: only with priceType spot or heterogeneous")
        return int(t["percentOnDemand"]) / 100.0
    if t.get("onDemandTargetCapacityRatio") is not None:
        return float(t["onDemandTargetCapacityRatio"])
    return 1.0 if price == "ondemand" else 0.0


def _hh_mm(text: str) -> int:
    """LSF's requestValidity "HH:MM" -> minutes."""
    hours, _, minutes = str(text).partition(":")
    try:
        total = int(hours) * 60 + int(minutes or 0)
    except ValueError:
        raise ConfigError(f"requestValidity: {text!r} is not HH:MM") from None
    if total < 1:
        raise ConfigError(f"requestValidity: {text!r} must be at least one minute")
    return total


def _conf_file(name: str, conf_dir: str, key: str) -> str:
    path = name if os.path.isabs(name) else os.path.join(conf_dir, name)
    if not os.path.isfile(path):
        raise ConfigError(f"{key}: no such file {path}")
    return path


def _fleet_config_text(path: str) -> tuple[str, dict[str, Any]]:
    """LSF's ec2FleetConfig: a CreateFleet request in JSON, with IBM's placeholders."""
    import json

    probe = ""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        probe = text
        for name in PLACEHOLDERS:  # IBM's placeholders stand where numbers go
            probe = probe.replace(name, "1")
        doc = json.loads(probe)
    except OSError as exc:
        raise ConfigError(f"ec2FleetConfig: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"ec2FleetConfig: {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"ec2FleetConfig: {path} must hold one CreateFleet request object")
    return text, doc


def _instance_tags(value: Any) -> tuple[dict[str, str], list[str]]:
    """IBM's two forms: "k=v;k2=v2" (Symphony, LSF) or LSF's older "k=v,k2=v2"; or an object.

    Keys AWS reserves (aws:...) are skipped, as IBM's plugin does, and reported.
    """
    if isinstance(value, dict):
        pairs = {str(k).strip(): str(v) for k, v in value.items()}
    else:
        text = value or ""
        if ";" not in text and text.count("=") > 1:
            text = text.replace(",", ";")  # "k=v,k2=v2": IBM's LSF plugin's other form
        try:
            pairs = tagmod.parse_tag_string(text)
        except ValueError as exc:
            raise ConfigError(f"instanceTags: {exc}") from exc
    ours = [k for k in pairs if k.startswith("hostfactory:")]
    if ours:
        raise ConfigError(f"instanceTags: '{ours[0]}' is reserved for the plugin")
    skipped = [k for k in pairs if k.lower().startswith("aws:")]
    return {k: v for k, v in pairs.items() if k not in skipped}, skipped


def _as_list(value: Any) -> list[str]:
    """A string of comma-separated ids or a list of them; blanks (LSF's [""]) are none."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [v.strip() for v in value if v.strip()]


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


NUMERIC_RANGE = re.compile(r"^\[?\s*-?\d+(\.\d+)?\s*[:,-]\s*-?\d+(\.\d+)?\s*\]?$")


def _check_numeric(name: str, value: Any) -> None:
    """A number, or LSF's range of numbers ("[1:4]", "1-4") passed through unchanged."""
    if isinstance(value, str) and NUMERIC_RANGE.match(value.strip()):
        return
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
    """The getAvailableTemplates form of one template (maxNumber 0: listed, none available)."""
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

