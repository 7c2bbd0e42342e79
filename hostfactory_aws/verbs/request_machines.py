"""requestMachines: reserve capacity in the state, launch, record what AWS gave.

The record is written (and maxNumber checked) under the state lock BEFORE the AWS call, so
two concurrent requests cannot both take the last slots, and a crash mid-launch leaves a
record that getRequestStatus completes from the instances' tags.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hostfactory_aws import answers, inputs, reconcile, records, state
from hostfactory_aws import tags as tagmod
from hostfactory_aws.cloud import apis, launch_spec
from hostfactory_aws.cloud.error_codes import MAYBE_DONE
from hostfactory_aws.context import Context
from hostfactory_aws.errors import AwsError, InputError

log = logging.getLogger(__name__)


def parse_input(data: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    tpl_in = data.get("template")
    if not isinstance(tpl_in, dict):
        raise InputError("template: required, an object with templateId and machineCount")
    tid = tpl_in.get("templateId")
    if not isinstance(tid, str) or not tid or len(tid) > inputs.MAX_NAME:
        raise InputError("template.templateId: required, a string of 1 to "
                         f"{inputs.MAX_NAME} characters")
    count = inputs.count(tpl_in.get("machineCount"), "template.machineCount")
    extra = {}
    account = data.get("rc_account", tpl_in.get("rc_account"))
    if account is not None:
        if not isinstance(account, str) or len(account) > inputs.MAX_NAME:
            raise InputError(f"rc_account: must be a string of at most {inputs.MAX_NAME} "
                             "characters")
        extra["rc_account"] = account
    exports = _user_data_input(data, tpl_in)
    if exports:
        extra["userData"] = exports
    return tid, count, extra


def _user_data_input(data: dict[str, Any], tpl_in: dict[str, Any]) -> dict[str, Any]:
    """LSF's userData (key -> value, exported to the boot script), top level or in template."""
    merged: dict[str, Any] = {}
    for where, value in (("userData", data.get("userData")),
                         ("template.userData", tpl_in.get("userData"))):
        if value is None:
            continue
        if not isinstance(value, dict):
            raise InputError(f"{where}: must be an object of name: value pairs")
        merged.update(value)
    try:
        launch_spec.export_lines(merged)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return merged


def run(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    tid, count, extra = parse_input(data)
    t = ctx.template(tid)
    if ctx.mode == "lsf":  # IBM's LSF plugins: exports into the plugin's boot script
        import os

        extra.setdefault("rc_account", tagmod.DEFAULT_RC_ACCOUNT)
        t = {**t, launch_spec.LSF_EXPORTS: launch_spec.lsf_exports(
            t, extra.get("userData", {}), extra["rc_account"], ctx.provider,
            os.environ.get("SCRIPT_OPTIONS", ""))}
    elif extra.get("userData"):
        t = {**t, launch_spec.EXPORT_USER_DATA: extra["userData"]}
    if launch_spec.LSF_EXPORTS in t or launch_spec.EXPORT_USER_DATA in t:
        try:
            launch_spec.user_data(t)  # fail now, before reserving anything
        except ValueError as exc:
            raise InputError(f"{exc} (template '{tid}')") from None
    cfg = ctx.config
    rid = records.new_request_id("req")
    path, timeout = ctx.state_path, cfg["STATE_LOCK_TIMEOUT_SEC"]
    journal = answers.token(path, create=True)
    answers.hold(path, rid)  # held until this process exits: the reaper leaves us alone
    # a dead call's reservation is freed before maxNumber is checked
    reconcile.reap(ctx, state.read(path, timeout), note_answered=False)
    with state.update(path, timeout) as st:
        if t["maxNumber"] >= 0:
            held = records.held_units(st).get(tid, 0.0)
            available = max(0, int(t["maxNumber"] - held))
            if count > available:
                answers.release(path, rid)
                raise InputError(
                    f"template.machineCount: {count} is more than the {available} template "
                    f"'{tid}' can still give (maxNumber {t['maxNumber']}, {held:g} held)")
        rec = records.new_create(tid, count, t["providerApi"], time.time(), journal)
        rec.update(fleetType=t["fleetType"], weights=t["vmTypes"], target=count,
                   onDemandShare=launch_spec.on_demand_share(t),
                   validUntil=rec["createdAt"] + 60 * float(t["spotFleetRequestExpiry"]))
        if t.get("instancePendingTimeoutSec"):
            rec["pendingTimeoutSec"] = t["instancePendingTimeoutSec"]
        # Names known before the call: a lost reply or a kill cannot hide what to release.
        if t["providerApi"] != "RunInstances" and not t.get("launchTemplateId"):
            rec["launchTemplateName"] = f"hf-{rid}"
        if t["providerApi"] == "ASG":
            rec["fleetIds"] = [f"hf-{rid}"]
        st["requests"][rid] = rec

    tags = tagmod.base_tags(ctx.provider, rid, tid)
    if "rc_account" in extra:
        tags[tagmod.RC_ACCOUNT] = extra["rc_account"]
    module = apis.module_for(t["providerApi"])
    if cfg.get("AWS_KEY_FILE") and t.get("keyName"):  # IBM: import or create the key pair
        from hostfactory_aws.cloud.key_pairs import ensure_key_pair

        ensure_key_pair(ctx.aws, t["keyName"], cfg["AWS_KEY_FILE"])
    try:
        launched = module.launch(ctx, t, rid, count, tags)
    except AwsError as exc:
        if exc.kind in MAYBE_DONE:
            # Sent, answer unknown (timeout, dropped connection, any 5xx, throttled to the
            # end): AWS may have launched. Keep the record; the instances' request-id tag
            # tells getRequestStatus what exists. Refused (4xx) or never sent: nothing
            # launched, so the reservation is forgotten and the error names the cause.
            with state.update(path, timeout) as st:
                rec = st["requests"][rid]
                rec["launch"] = "unknown"
                rec["errors"] = [f"{exc.code}: {exc.aws_message}"]
            log.error("%s: launch outcome unknown: %s", rid, exc)
            return _answered(path, {"requestId": rid, "message": f"launch outcome unknown "
                                    f"({exc.code}); getRequestStatus reports what AWS "
                                    "launched"})
        _forget(path, timeout, rid)
        raise
    except BaseException:
        _forget(path, timeout, rid)
        raise

    with state.update(path, timeout) as st:
        rec = st["requests"][rid]
        rec["launch"] = "done"
        rec["fleetIds"] = launched["fleetIds"] or rec["fleetIds"]
        rec["launchTemplateId"] = launched["launchTemplateId"]
        if launched.get("templateDeleted"):  # an instant fleet's, deleted at once
            rec.pop("launchTemplateName", None)
        if launched.get("launchTemplateVersion"):
            rec["launchTemplateVersion"] = launched["launchTemplateVersion"]
        if launched.get("suspendPending"):
            rec["suspendPending"] = True
        rec["errors"] = launched["errors"]
        for iid, info in launched["instances"].items():
            rec["instances"][iid] = {**info, "state": "pending", "returnId": None}
    if cfg["AWS_TAG_InstanceID"] and launched["instances"]:
        from hostfactory_aws.cloud.instance_id_tags import tag_instance_ids

        tag_instance_ids(ctx.aws, sorted(launched["instances"]))
    got = sum(i["units"] for i in launched["instances"].values())
    if launched["instances"]:
        msg = f"launching {len(launched['instances'])} machines ({got:g} of {count} units)"
    else:
        msg = f"{t['providerApi']} {', '.join(launched['fleetIds'])} launching {count} units"
    if launched["errors"]:
        msg += "; " + "; ".join(launched["errors"])
    log.info("%s: template %s: %s", rid, tid, msg)
    return _answered(path, {"requestId": rid, "message": msg})


def _answered(path: str, answer: dict[str, Any]) -> dict[str, Any]:
    """The id goes to the answer journal (fsynced) before HostFactory can read it."""
    answers.mark(path, answer["requestId"])
    return answer


def _forget(path: str, timeout: float, rid: str) -> None:
    """Nothing was launched: leave the state as it was before the call."""
    with state.update(path, timeout) as st:
        st["requests"].pop(rid, None)
    answers.release(path, rid)
