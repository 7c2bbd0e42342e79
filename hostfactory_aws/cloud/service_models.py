"""A lean botocore start-up: the installed botocore's own models, cut to what we call.

Every process parses EC2's whole model (4.3 MB of JSON, ~800 operations) and all of
endpoints.json (1.2 MB) before its first call, for the thirty-odd operations the plugin
uses. On first use, the installed botocore's files are copied into the work dir, cut to
OPERATIONS and the shapes they reach, and keyed by botocore's version and that operation
set: the copy can never drift from the library, and an upgrade makes a new one. botocore's
own Loader then reads the copy, so request signing, retries, endpoint rules and the
credential chain are botocore's, unchanged.

Every AWS call in the package names its operation literally; tests/cli/test_iam_policy.py
scans them all and fails when one is missing here. A call to an operation left out fails
loudly (see Aws.call), never quietly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from typing import Any

log = logging.getLogger(__name__)

# service -> every operation the plugin calls (admin commands included).
OPERATIONS: dict[str, frozenset[str]] = {
    "ec2": frozenset({
        "CancelSpotFleetRequests", "CreateFleet", "CreateKeyPair", "CreateLaunchTemplate",
        "CreateLaunchTemplateVersion", "DeleteLaunchTemplateVersions",
        "DescribeLaunchTemplateVersions",
        "CreateTags", "DeleteFleets", "DeleteLaunchTemplate", "DescribeFleets", "DescribeImages",
        "DescribeInstanceTypes", "DescribeInstances", "DescribeKeyPairs",
        "DescribeLaunchTemplates", "DescribeSecurityGroups", "DescribeSpotFleetRequests",
        "DescribeSpotInstanceRequests", "DescribeSubnets", "DescribeVolumes",
        "ImportKeyPair", "ModifyFleet",
        "ModifySpotFleetRequest", "RequestSpotFleet", "RunInstances", "TerminateInstances",
    }),
    "autoscaling": frozenset({
        "CreateAutoScalingGroup", "DeleteAutoScalingGroup", "DescribeAccountLimits",
        "DescribeAutoScalingGroups",
        "DescribeAutoScalingInstances", "DescribeScalingActivities", "DetachInstances",
        "SuspendProcesses",
        "TerminateInstanceInAutoScalingGroup", "UpdateAutoScalingGroup",
    }),
    "iam": frozenset({"GetInstanceProfile", "GetRole"}),
    "ssm": frozenset({"GetParameter"}),
    "sts": frozenset({"GetCallerIdentity"}),
}
# Output structures cut to the members the plugin reads (service -> shape -> members). An
# Instance has ~60 members; parsing its network interfaces, block devices, security groups
# and the rest it never reads took two thirds of botocore's time on a DescribeInstances or
# RunInstances reply (0.88 s -> 0.32 s per 1,000 instances), the largest own cost of a call
# at scale. tests/unit/test_service_models.py fails if the package names an Instance member
# left out here. Input shapes are never cut.
OUTPUT_MEMBERS: dict[str, dict[str, frozenset[str]]] = {
    "ec2": {"Instance": frozenset({
        "ClientToken", "InstanceId", "InstanceLifecycle", "InstanceType", "LaunchTime",
        "Placement", "PrivateDnsName", "PrivateIpAddress", "PublicDnsName", "PublicIpAddress",
        "SpotInstanceRequestId", "State", "StateReason", "StateTransitionReason", "SubnetId",
        "Tags",
    })},
}
# Bump when the way a copy is cut changes, so old copies are not reused.
FORMAT = 2
# Whole files botocore reads at start-up beside the service models (small ones).
ROOT_FILES = ("partitions", "sdk-default-configuration", "_retry")
# Per-service files cut to OPERATIONS (the rule set is per service already: copied whole).
SERVICE_FILES = ("service-2", "endpoint-rule-set-1", "paginators-1", "waiters-2")
PREFIX = "botocore-models-"


def key(operations: dict[str, frozenset[str]] | None = None) -> str:
    """botocore's version and a digest of the operation set: the copy's directory name."""
    import botocore

    ops = OPERATIONS if operations is None else operations
    members = {s: {n: sorted(m) for n, m in sorted(shapes.items())}
               for s, shapes in sorted(OUTPUT_MEMBERS.items())}
    text = json.dumps([{s: sorted(o) for s, o in sorted(ops.items())}, members]) + \
        f"/{FORMAT}"
    return f"{PREFIX}{botocore.__version__}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def ensure(cache_dir: str, operations: dict[str, frozenset[str]] | None = None) -> str:
    """The directory of the lean copy for the installed botocore, made if missing.

    Built in a temporary directory and renamed into place, so concurrent first calls never
    see half a copy: the first rename wins, the others use it. Raises OSError when the
    cache dir cannot be written.
    """
    ops = OPERATIONS if operations is None else operations
    root = os.path.join(cache_dir, key(ops))
    if os.path.isdir(root):
        return root
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-models-", dir=cache_dir)
    try:
        build(tmp, ops)
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide it from another account's calls
        os.rename(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(root):  # not a lost race: a real failure
            raise
    else:
        log.info("made the lean botocore models in %s", root)
        _remove_stale(cache_dir, os.path.basename(root))
    return root


def _remove_stale(cache_dir: str, keep: str) -> None:
    """Copies for another botocore version or operation set: not read again."""
    for name in os.listdir(cache_dir):
        if name.startswith(PREFIX) and name != keep:
            shutil.rmtree(os.path.join(cache_dir, name), ignore_errors=True)


def build(dest: str, operations: dict[str, frozenset[str]]) -> None:
    """Write the cut copy of the installed botocore's data for ``operations`` into dest."""
    from botocore.exceptions import DataNotFoundError
    from botocore.loaders import Loader

    full = Loader()  # botocore's own data only (no AWS_DATA_PATH: install() skips those)
    for name in ROOT_FILES:
        _write(os.path.join(dest, f"{name}.json"), full.load_data(name))
    prefixes: set[str] = set()
    for service, ops in operations.items():
        version = full.determine_latest_version(service, "service-2")
        model = full.load_service_model(service, "service-2", version)
        unknown = sorted(set(ops) - set(model["operations"]))
        if unknown:
            raise ValueError(f"botocore {service} model has no operations {unknown}")
        prefixes |= {service, model["metadata"].get("endpointPrefix", service)}
        for type_name in SERVICE_FILES:
            try:
                data = full.load_service_model(service, type_name, version)
            except DataNotFoundError:
                continue  # e.g. a service without waiters
            _write(os.path.join(dest, service, version, f"{type_name}.json"),
                   cut(type_name, data, ops, OUTPUT_MEMBERS.get(service)))
    _write(os.path.join(dest, "endpoints.json"), cut_endpoints(full.load_data("endpoints"),
                                                               prefixes))


def _write(path: str, data: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, separators=(",", ":"))


def cut(type_name: str, data: dict[str, Any], ops: frozenset[str],
        members: dict[str, frozenset[str]] | None = None) -> dict[str, Any]:
    """One per-service file cut to ``ops`` (and output ``members``) (pure)."""
    if type_name == "service-2":
        return cut_service(data, ops, members)
    if type_name == "paginators-1":
        return {**data, "pagination": {k: v for k, v in data.get("pagination", {}).items()
                                       if k in ops}}
    if type_name == "waiters-2":
        return {**data, "waiters": {k: v for k, v in data.get("waiters", {}).items()
                                    if v.get("operation") in ops}}
    return data


def cut_service(model: dict[str, Any], ops: frozenset[str],
                members: dict[str, frozenset[str]] | None = None) -> dict[str, Any]:
    """The service model with only ``ops`` and the shapes they reach, without prose; the
    structures named in ``members`` keep only those members (output shapes only: a shape
    an operation's input reaches is never cut)."""
    operations = {name: _undocumented(op) for name, op in model["operations"].items()
                  if name in ops}
    shapes = dict(model["shapes"])
    if members:
        inputs: set[str] = set()
        todo = [op["input"]["shape"] for op in operations.values() if op.get("input")]
        while todo:
            name = todo.pop()
            if name not in inputs:
                inputs.add(name)
                todo.extend(_refs(shapes[name]))
        for name, keep_members in members.items():
            if name in shapes and name not in inputs:
                shapes[name] = {**shapes[name], "members": {
                    m: v for m, v in shapes[name]["members"].items() if m in keep_members}}
    keep: set[str] = set()
    todo = [ref for op in operations.values() for ref in _refs(op)]
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo.extend(_refs(shapes[name]))
    out_shapes = {}
    for name in sorted(keep):
        shape = _undocumented(shapes[name])
        if "members" in shape:
            shape["members"] = {m: _undocumented(v) for m, v in shape["members"].items()}
        out_shapes[name] = shape
    out = {k: v for k, v in model.items() if k not in ("operations", "shapes",
                                                        "documentation")}
    return {**out, "operations": operations, "shapes": out_shapes}


def _undocumented(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("documentation", "documentationUrl")}


def _refs(obj: Any) -> list[str]:
    """Names of the shapes an operation or shape refers to (members, list/map parts,
    input, output, errors), at any depth."""
    out: list[str] = []
    if isinstance(obj, dict):
        if isinstance(obj.get("shape"), str):
            out.append(obj["shape"])
        for value in obj.values():
            if isinstance(value, (dict, list)):
                out.extend(_refs(value))
    elif isinstance(obj, list):
        for value in obj:
            out.extend(_refs(value))
    return out


def cut_endpoints(data: dict[str, Any], prefixes: set[str]) -> dict[str, Any]:
    """endpoints.json with only the services we call, in every partition (pure)."""
    parts = [{**p, "services": {k: v for k, v in p.get("services", {}).items()
                                if k in prefixes}} for p in data["partitions"]]
    return {**data, "partitions": parts}


def lean_loader(root: str) -> Any:
    """botocore's Loader reading only the lean copy at ``root``.

    The copy counts as botocore's built-in data (it is a cut of it): botocore resolves
    endpoints from the rule sets exactly as it would with its own files.
    """
    from botocore.loaders import Loader

    class LeanLoader(Loader):
        def is_builtin_path(self, path: str) -> bool:
            return os.path.expanduser(os.path.expandvars(path)).startswith(root)

    return LeanLoader(extra_search_paths=[root], include_default_search_paths=False)


def install(session: Any, cache_dir: str) -> bool:
    """Make a botocore session read the lean copy (made in cache_dir if missing).

    Returns False, leaving botocore's full models in place, when the admin points botocore
    at models of their own (AWS_DATA_PATH / data_path) or the copy cannot be made.
    """
    try:
        if session.get_config_variable("data_path"):
            return False
    except Exception:  # a broken profile: botocore reports it when the client is made
        return False
    try:
        root = ensure(cache_dir)
    except (OSError, ValueError) as exc:
        log.warning("lean botocore models not made in %s (%s): using botocore's full models",
                    cache_dir, exc)
        return False
    session.register_component("data_loader", lean_loader(root))
    return True
