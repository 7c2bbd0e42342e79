"""getAvailableTemplates: every template in file order, typed attributes, what is left.

Needs AWS only to fill ncpus/nram the admin left out, and then only once per instance type.
"""

from __future__ import annotations

from typing import Any

from . import ec2_info, records, state
from . import templates as tpl
from .context import Context


def run(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    templates = ctx.templates
    held = records.held_units(state.read(ctx.state_path, ctx.config["STATE_LOCK_TIMEOUT_SEC"]))
    wanted = [next(iter(t["vmTypes"])) for t in templates if tpl.needs_fill(t, ctx.mem_key)]
    specs = {}
    if wanted:
        specs = ec2_info.instance_specs(lambda: ctx.aws, wanted,
                                        ec2_info.cache_file(ctx.work_dir, "instance_types.json"))
    out = [tpl.hf_template(t, held.get(t["templateId"], 0.0),
                           tpl.fill_attributes(t, specs, ctx.mem_key)) for t in templates]
    return {"message": f"{len(out)} templates from {ctx.templates_path}", "templates": out}
