"""One module per AWS provisioning API, behind the same small interface.

Every module has:
  launch(ctx, t, request_id, units, tags) -> Launch   raises AwsError if nothing started
  describe(ctx, recs) -> {request id: Progress}         batched: one call per 100 resources
  settle(ctx, rec, running_units) -> None               request ended: launch nothing more
  before_return(ctx, rec, units_by_id) -> set[str]      make the API let go of these machines
                                                        (ids it terminated itself)
  cleanup(ctx, rec) -> None                             last machine gone: remove resources
  owned(ctx) -> [Resource]                               this provider's fleets or groups
                                                        that still work, found by their tags
A Resource is a plain dict: {"api", "id", "requestId", "templateId", "createdAt" (epoch),
"fleetType", "target"}; a launch template's also has "launchTemplateName".
A Launch is a plain dict: {"instances": {id: {"units", "name", "type"}}, "fleetIds": [...],
"errors": ["Code: message"], "launchTemplateId": id we created or None, "target": units}.
A Progress is {"active": bool (may still launch more), "errors": [...]}.
"""

from __future__ import annotations

import importlib
import logging
import math
from typing import Any, Callable, Iterable

from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import instance_types, launch_spec
from hostfactory_aws.context import Context
from hostfactory_aws.errors import AwsError
from hostfactory_aws.machines import epoch

log = logging.getLogger(__name__)
MODULES = {"RunInstances": "run_instances", "EC2Fleet": "ec2_fleet",
           "SpotFleet": "spot_fleet", "ASG": "asg"}


def module_for(api: str) -> Any:
    """The module of one API; a record rebuilt from tags alone (api unknown) gets
    RunInstances', whose release and cleanup leave everything to instance termination."""
    return importlib.import_module(f"{__name__}.{MODULES.get(api, 'run_instances')}")


FLEET_APIS = ("EC2Fleet", "SpotFleet", "ASG")
LAUNCH_TEMPLATES_PAGE = 200  # DescribeLaunchTemplates' largest page


def made_for(token: str | None, rid: str) -> bool:
    """A ClientToken the plugin made for this request: ``<rid>`` (CreateFleet,
    RequestSpotFleet) or ``<rid>-<suffix>`` (RunInstances batches, top-ups, retries)."""
    return bool(rid) and bool(token) and (token == rid or str(token).startswith(rid + "-"))


def resource(api: str, rid_id: str, tags: list[dict[str, str]] | None, provider: str,
             created: Any, token: str | None = None, **fields: Any) -> dict[str, Any] | None:
    """One Resource from a described fleet, group or template, None unless this provider
    tagged it with a request id (pure). A fleet also needs its ``token`` (ClientToken) made
    for that request: tags can be written on anyone's fleet, a ClientToken only at creation,
    and releasing a fleet that is not ours would end someone else's capacity."""
    mine = tagmod.from_aws(tags)
    if mine.get(tagmod.PROVIDER) != provider or not mine.get(tagmod.REQUEST_ID, "").startswith(
            "req-"):
        return None
    if api in ("EC2Fleet", "SpotFleet") and not made_for(token, mine[tagmod.REQUEST_ID]):
        log.warning("%s %s carries %s=%s but was not created for %s (ClientToken %s): left "
                    "alone", api, rid_id, tagmod.PROVIDER, provider, mine[tagmod.REQUEST_ID],
                    token or "none")
        return None
    return {"api": api, "id": rid_id, "requestId": mine[tagmod.REQUEST_ID],
            "templateId": mine.get(tagmod.TEMPLATE_ID, "?"), "createdAt": float(epoch(created)),
            **fields}


def owned_templates(items: Iterable[dict[str, Any]], provider: str) -> list[dict[str, Any]]:
    """The launch templates made for a request (``hf-<request id>``) among ``items`` (pure):
    never an admin's template, even one carrying our tags."""
    out = []
    for lt in items:
        res = resource("", lt["LaunchTemplateId"], lt.get("Tags"), provider,
                       lt.get("CreateTime"), launchTemplateName=lt.get("LaunchTemplateName"))
        if res and res["launchTemplateName"] == f"hf-{res['requestId']}":
            out.append(res)
    return out


def families(templates: list[dict[str, Any]]) -> set[str]:
    """What left_behind lists for these templates (pure): the fleet APIs they use that
    launch after the call, and "LaunchTemplate" if any launch makes one. A site that only
    uses RunInstances (or instant fleets) pays no listing it cannot need, and needs no
    endpoint or permission of a service it never calls."""
    out: set[str] = set()
    for t in templates:
        api = t.get("providerApi", "RunInstances")
        if api != "RunInstances":
            out.add("LaunchTemplate")
        if api in FLEET_APIS and not (api == "EC2Fleet" and t.get("fleetType") == "instant"):
            out.add(api)
    return out


def left_behind(ctx: Context, wanted: set[str]) -> list[dict[str, Any]]:
    """This provider's fleets, Spot Fleet requests, groups and launch templates that still
    exist (of the ``wanted`` families, see families), found by their own tags: what a lost
    state file can no longer name.

    One paginated listing per family (a few calls), made once when the state file is lost.
    """
    out: list[dict[str, Any]] = []
    if "LaunchTemplate" in wanted:
        pages = ctx.aws.paginate("ec2", "DescribeLaunchTemplates",
                                 Filters=[tagmod.provider_filter(ctx.provider)],
                                 MaxResults=LAUNCH_TEMPLATES_PAGE)
        out += owned_templates((lt for page in pages for lt in page.get("LaunchTemplates", [])),
                               ctx.provider)
    for api in FLEET_APIS:
        if api in wanted:
            out += module_for(api).owned(ctx)
    return out


def new_launch(target: int = 0) -> dict[str, Any]:
    return {"instances": {}, "fleetIds": [], "errors": [], "launchTemplateId": None,
            "launchTemplateVersion": None, "target": target}


def prepare(ctx: Context, t: dict[str, Any], tags: dict[str, str]) -> tuple[dict, str | None]:
    """Common instance fields (image resolved, root device known) and the user data."""
    aws = ctx.aws
    image = t.get("imageId")
    if image:
        image = instance_types.resolve_image(aws, image)
    root = t.get("rootDeviceName")
    if "rootDeviceVolumeSize" in t and not root and image:
        root = instance_types.root_device_name(aws, image,
                                         instance_types.cache_file(ctx.work_dir, "images.json"))
    common = launch_spec.instance_common(t, image, root, launch_spec.resource_tags(t, tags))
    return common, launch_spec.user_data(t)


def launch_template(ctx: Context, t: dict[str, Any], request_id: str,
                    tags: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """(LaunchTemplateSpecification, id of the template we created or None).

    The admin's own launchTemplateId is never changed or deleted: an API that launches
    after the call (request/maintain fleets, Spot Fleet, groups) gets a version of it made
    for this request that adds our instance and volume tags (nothing launches untagged,
    else nothing would ever end it), deleted at cleanup. Otherwise one template is made per
    request, named after it and idempotent by ClientToken, tagged like everything else;
    its TagSpecifications tag the fleet's instances and volumes at creation.
    """
    if t.get("launchTemplateId"):
        ref = launch_spec.launch_template_ref(t)
        if t.get("fleetType") == "instant":  # CreateFleet tags the instances itself
            return ref, None
        return tagged_version(ctx, t, ref, request_id, tags), None
    common, data = prepare(ctx, t, tags)
    try:
        resp = ctx.aws.call(
            "ec2", "CreateLaunchTemplate", LaunchTemplateName=f"hf-{request_id}",
            ClientToken=f"{request_id}-lt",
            LaunchTemplateData=launch_spec.launch_template_data(t, common, data),
            TagSpecifications=tagmod.tag_specs(["launch-template"],
                                               launch_spec.resource_tags(t, tags)))
        lt_id = resp["LaunchTemplate"]["LaunchTemplateId"]
    except AwsError as exc:
        if exc.code != "InvalidLaunchTemplateName.AlreadyExistsException":
            raise
        # A retry of this very request (same name): reuse what the first attempt made.
        resp = ctx.aws.call("ec2", "DescribeLaunchTemplates",
                            LaunchTemplateNames=[f"hf-{request_id}"])
        lt_id = resp["LaunchTemplates"][0]["LaunchTemplateId"]
    return {"LaunchTemplateId": lt_id, "Version": "$Latest"}, lt_id


FRESH_TEMPLATE_WAITS = (0.5, 1.0, 2.0)  # seconds: EC2 usually shows a new template within 1 s


def retry_fresh_template(created_lt: str | None,
                         call: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
    """``call(attempt)`` (which uses the launch template we just created), retried briefly
    while EC2, eventually consistent, still says that template does not exist.

    Such a NotFound refuses the call before anything is launched, so the retry cannot
    double; an admin's own template (created_lt None) is never retried. ``attempt`` (0, 1,
    ...) lets a call whose refusal came inside a reply (an instant fleet's Errors) take a
    new ClientToken, since the old one would replay that reply.
    """
    import time

    from hostfactory_aws.cloud.error_codes import is_fresh_template_miss

    for attempt, wait in enumerate((*FRESH_TEMPLATE_WAITS, None)):
        try:
            return call(attempt)
        except AwsError as exc:
            if not created_lt or wait is None or not is_fresh_template_miss(
                    exc.code, exc.aws_message):
                raise
            log.info("%s: launch template %s not visible yet; retrying in %gs",
                     exc.operation, created_lt, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises


def tagged_version(ctx: Context, t: dict[str, Any], ref: dict[str, str], request_id: str,
                   tags: dict[str, str]) -> dict[str, str]:
    """A version of the admin's template with our tags merged into its own."""
    src = ctx.aws.call("ec2", "DescribeLaunchTemplateVersions",
                       LaunchTemplateId=ref["LaunchTemplateId"], Versions=[ref["Version"]])
    data = src["LaunchTemplateVersions"][0].get("LaunchTemplateData", {})
    theirs = {s["ResourceType"]: tagmod.from_aws(s.get("Tags"))
              for s in data.get("TagSpecifications", [])}
    ours = launch_spec.resource_tags(t, tags)
    specs = [{"ResourceType": rt, "Tags": tagmod.as_aws({**theirs.get(rt, {}), **ours})}
             for rt in sorted(set(theirs) | {"instance", "volume"})]
    resp = ctx.aws.call("ec2", "CreateLaunchTemplateVersion",
                        LaunchTemplateId=ref["LaunchTemplateId"], SourceVersion=ref["Version"],
                        ClientToken=f"{request_id}-ltv",
                        VersionDescription=f"hostfactory {request_id}",
                        LaunchTemplateData={"TagSpecifications": specs})
    number = resp["LaunchTemplateVersion"]["VersionNumber"]
    return {"LaunchTemplateId": ref["LaunchTemplateId"], "Version": str(number)}


def own_version(t: dict[str, Any], ref: dict[str, str]) -> dict[str, str] | None:
    """The version launch_template made of the admin's template, if it made one."""
    if t.get("launchTemplateId") and ref != launch_spec.launch_template_ref(t):
        return dict(ref)
    return None


def release_templates(ctx: Context, rec: dict[str, Any]) -> None:
    """Cleanup's last step: the template made for the request, or our version of the
    admin's (never the admin's own versions)."""
    delete_launch_template(ctx, rec.get("launchTemplateId"), rec.get("launchTemplateName"))
    own = rec.get("launchTemplateVersion")
    if not own:
        return
    try:
        resp = ctx.aws.call("ec2", "DeleteLaunchTemplateVersions",
                            LaunchTemplateId=own["LaunchTemplateId"], Versions=[own["Version"]])
    except AwsError as exc:
        if exc.kind == "not_found":
            return
        raise
    for bad in resp.get("UnsuccessfullyDeletedLaunchTemplateVersions", []):
        err = bad.get("ResponseError") or {}
        if err.get("Code") not in ("launchTemplateVersionDoesNotExist",
                                   "launchTemplateIdDoesNotExist"):
            raise AwsError("DeleteLaunchTemplateVersions", str(err.get("Code")),
                           str(err.get("Message")), "fatal")


def delete_launch_template(ctx: Context, lt_id: str | None, name: str | None = None) -> None:
    """Delete the template made for a request, by id, or by its name when a lost reply left
    the id unknown; a template already gone is fine."""
    if not lt_id and not name:
        return
    key = {"LaunchTemplateId": lt_id} if lt_id else {"LaunchTemplateName": name}
    try:
        ctx.aws.call("ec2", "DeleteLaunchTemplate", **key)
    except AwsError as exc:
        if exc.kind != "not_found" and "does not exist" not in exc.aws_message:
            raise


def undo_template(ctx: Context, lt_id: str | None, exc: AwsError) -> None:
    """The launch call failed: drop the template made for it if AWS surely did nothing.

    Not when the outcome is unknown (a fleet may exist and need it to tag what it launches),
    and a failure here never hides the launch's own error: the template's name is in the
    record, so cleanup deletes it later.
    """
    if not lt_id or exc.kind in ("throttle", "unknown"):
        return
    try:
        delete_launch_template(ctx, lt_id)
    except AwsError as why:
        log.warning("could not delete launch template %s, cleanup retries it: %s", lt_id, why)


def lowered_target(rec: dict[str, Any], units_by_id: dict[str, float]) -> int:
    """A maintain fleet's target once the given machines are returned."""
    return max(0, math.ceil(rec.get("target", 0) - sum(units_by_id.values())))


def on_demand_part(rec: dict[str, Any], target: int) -> int:
    """The on-demand share of a new target, so that a lowered target keeps the mix."""
    return min(target, math.ceil(target * rec.get("onDemandShare", 0.0)))


def weights_units(weights: dict[str, float], itype: str | None) -> float:
    return float(weights.get(itype or "", 1.0)) if weights else 1.0


def expiry(t: dict[str, Any], now: float) -> float:
    return now + 60 * float(t["spotFleetRequestExpiry"])


def iso(epoch: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def no_progress(recs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For APIs that answer at once: nothing more will come."""
    return {rid: {"active": False, "errors": []} for rid in recs}
