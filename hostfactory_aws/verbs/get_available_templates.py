"""getAvailableTemplates: every template in file order, typed attributes, what is left.

Needs AWS only to fill ncpus/nram the admin left out (once per instance type), and when
the state file is missing: then one sweep rebuilds it from what AWS says runs.
"""

from __future__ import annotations

import os

from hostfactory_aws import records, state
from hostfactory_aws import templates as tpl
from hostfactory_aws.context import Context

TYPE_CHECKING = False  # importing typing costs every call ~6 ms: annotations only
if TYPE_CHECKING:
    from typing import Any


def run(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    templates = ctx.templates
    if os.path.exists(ctx.state_path):
        snapshot = state.read(ctx.state_path, ctx.config["STATE_LOCK_TIMEOUT_SEC"])
    else:  # lost work dir: what runs is what AWS says, not nothing
        from hostfactory_aws import reconcile  # only here: the steady call stays lean

        snapshot = reconcile.adopt_lost_state(ctx)
    held = records.held_units(snapshot)
    wanted = [next(iter(t["vmTypes"])) for t in templates if tpl.needs_fill(t, ctx.mem_key)]
    specs = {}
    if wanted:
        from hostfactory_aws.cloud import instance_types

        cache = instance_types.cache_file(ctx.work_dir, "instance_types.json")
        specs = instance_types.instance_specs(lambda: ctx.aws, wanted, cache)
    out = [tpl.hf_template(t, held.get(t["templateId"], 0.0),
                           tpl.fill_attributes(t, specs, ctx.mem_key)) for t in templates]
    msg = f"{len(out)} templates from {ctx.templates_path}"
    if ctx.template_errors:
        msg += (f"; {len(ctx.template_errors)} left out, in error: "
                + "; ".join(ctx.template_errors.values()))
    if ctx.template_warnings:
        msg += "; ignored: " + "; ".join(ctx.template_warnings)
    return {"message": msg, "templates": out}
