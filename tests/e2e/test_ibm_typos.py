"""Issue 13: a typo in the config or in one template never stops returns or other templates.

Through the scripts, as HostFactory calls them: machines launched before the files were
broken are reported and given back; the good templates keep launching; the bad template is
named with its field and refused alone; unknown keys are logged with a did-you-mean.
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.hostfactory import FLEET_OD, FLEET_SPOT, RI, HostFactory


def test_typos_leave_returns_and_other_templates_working(hf: HostFactory) -> None:
    rid = hf.request(RI, 2)
    machines = hf.wait(rid)["machines"]
    assert len(machines) == 2

    # the admin edits both files and makes mistakes
    config = json.loads(hf.config_path.read_text())
    hf.config_path.write_text(json.dumps({**config, "LogLevl": "INFO",
                                          "AWS_PROXY_HOTS": "proxy"}))
    tpls = hf.default_templates()
    tpls[1] = {**tpls[1], "maxNumber": "twenty"}  # FLEET_OD: a bad value
    tpls[2] = {**tpls[2], "keyNmae": "grid-admin"}  # FLEET_SPOT: an unknown key
    hf.write_templates(tpls)

    answer = hf.ok("getAvailableTemplates", {})
    assert [t["templateId"] for t in answer["templates"]] == [RI, FLEET_SPOT]
    assert f"template '{FLEET_OD}': maxNumber:" in answer["message"]
    code, refused = hf.call("requestMachines", {"template": {"templateId": FLEET_OD,
                                                             "machineCount": 1}})
    assert code == 1 and f"'{FLEET_OD}'" in refused["message"]
    assert "maxNumber" in refused["message"]
    spot = hf.request(FLEET_SPOT, 1)
    assert hf.wait(spot)["status"] == "complete"

    ret = hf.give_back(machines)
    assert hf.wait(ret)["status"] == "complete"
    log = hf.log_text()
    assert "unknown field 'LogLevl' (did you mean 'LogLevel'?)" in log
    assert "unknown field 'AWS_PROXY_HOTS' (did you mean 'AWS_PROXY_HOST'?)" in log
    assert "unknown field 'keyNmae' (did you mean 'keyName'?)" in log


def test_releasing_capacity_works_whatever_the_templates_file_says(hf: HostFactory) -> None:
    rid = hf.request(RI, 1)
    machines: list[dict[str, Any]] = hf.wait(rid)["machines"]
    hf.templates_path.write_text('{"templates": [ {"templateId": "A",,, ')  # not JSON
    code, answer = hf.call("getAvailableTemplates", {})
    assert code == 1 and "not valid JSON" in answer["message"]
    assert hf.status(rid)[0]["status"] == "complete"
    held = [{"name": m["name"], "machineId": m["machineId"]} for m in machines]
    assert hf.ok("getReturnRequests", {"machines": held})["requests"] == []
    ret = hf.give_back(machines)
    assert hf.wait(ret)["status"] == "complete"
