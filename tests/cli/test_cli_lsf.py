"""LSF resource connector: the five verbs through scripts/*.sh with LSF's PRO_* environment.

LSF reads ``mem`` (not ``nram``), may send ``rc_account`` (tagged RC_ACCOUNT on every
instance, ``default`` when LSF sends none) and ``userData`` key/values (exported into the
instance's boot script as IBM's LSF plugins do), and orders templates by ``priority``,
which must be echoed.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from hostfactory_aws.cloud import launch_spec
from tests.support.hostfactory import PROVIDER, HostFactory, tags_of

BOOT = "#!/bin/bash\necho booting >> /var/log/boot.log\n"


def _setup(site: HostFactory) -> None:
    (site.conf_dir / "boot.sh").write_text(BOOT)
    site.write_templates([
        site.template("LsfScript", attributes={"type": ["String", "X86_64"]}, priority=10,
                      userDataScript="boot.sh"),
        site.template("LsfBare", attributes={"type": ["String", "X86_64"], "ncpus": 2},
                      priority=5),
    ])


def _run_exports(script: str, *names: str) -> str:
    """What the boot script's exports hold, as bash sees them (the script's own lines dropped)."""
    exports = "\n".join(x for x in script.splitlines() if x.startswith(("#!", "export ")))
    shown = " ".join(f'"${{{n}}}"' for n in names)
    proc = subprocess.run(["bash", "-c", exports + f"\nprintf '%s|' {shown}"],
                          capture_output=True, text=True, timeout=30, env={})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _wait(site: HostFactory, rid: str) -> dict[str, Any]:
    for _ in range(6):
        answer = site.ok("getRequestStatus", {"requests": [{"requestId": rid}]})["requests"][0]
        if answer["status"] != "running":
            return answer
    raise AssertionError(f"{rid} still running: {answer}")


def test_lsf_cycle_through_the_scripts(lsf_site: HostFactory) -> None:
    site = lsf_site
    _setup(site)
    templates = {t["templateId"]: t for t in site.ok("getAvailableTemplates", {})["templates"]}
    script_t, bare_t = templates["LsfScript"], templates["LsfBare"]
    assert script_t["attributes"]["mem"] == ["Numeric", "8192"]  # from m5.large, in MiB
    assert "nram" not in script_t["attributes"] and "nram" not in bare_t["attributes"]
    assert bare_t["attributes"]["ncpus"] == ["Numeric", "2"]
    assert (script_t["priority"], bare_t["priority"]) == (10, 5)

    rid = site.ok("requestMachines", {
        "template": {"templateId": "LsfScript", "machineCount": 2,
                     "userData": {"clustername": "grid1"}},
        "rc_account": "proj-a",
        "userData": {"LSF_TAG": "it's $HOME `id`", "rc_account": "proj-a"}})["requestId"]
    answer = _wait(site, rid)
    assert answer["status"] == "complete", answer
    ids = [m["machineId"] for m in answer["machines"]]
    assert len(ids) == 2
    instances = site.server.instances()
    for iid in ids:
        tags = tags_of(instances[iid])
        assert tags["RC_ACCOUNT"] == "proj-a"
        assert tags["hostfactory:provider"] == PROVIDER
        data = site.server.user_data(iid)
        head = data.splitlines()
        assert head[0] == "#!/bin/bash"
        assert head[1:6] == ["export LSF_TAG='it'\\''s $HOME `id`'",
                             "export rc_account='proj-a'", "export clustername='grid1'",
                             "export template_id='LsfScript'",
                             f"export providerName='{PROVIDER}'"]
        assert data.endswith("echo booting >> /var/log/boot.log\n")
        assert _run_exports(data, "LSF_TAG", "rc_account", "clustername") == (
            "it's $HOME `id`|proj-a|grid1|")

    bare = site.ok("requestMachines", {"template": {
        "templateId": "LsfBare", "machineCount": 1, "userData": {"A_1": "x y"}}})["requestId"]
    bare_id = _wait(site, bare)["machines"][0]["machineId"]
    boot = site.server.user_data(bare_id)  # the plugin's scripts/user_data.sh
    assert "%EXPORT_USER_DATA%" not in boot and boot.startswith("#!/bin/sh\n")
    assert "\nexport A_1='x y'\nexport rc_account='default'\nexport template_id='LsfBare'\n" \
        in boot
    assert tags_of(site.server.instances()[bare_id])["RC_ACCOUNT"] == "default"
    machine = _wait(site, bare)["machines"][0]
    assert machine["rcAccount"] == "default"

    held = [{"name": m["name"], "machineId": m["machineId"]} for m in answer["machines"]]
    assert site.ok("getReturnRequests", {"machines": held})["requests"] == []
    ret = site.ok("requestReturnMachines", {"machines": held})["requestId"]
    for _ in range(6):
        done = site.ok("getRequestStatus", {"requests": [{"requestId": ret}]})["requests"][0]
        if done["status"] != "running":
            break
    assert done["status"] == "complete", done
    assert {site.server.instances()[i]["State"]["Name"] for i in ids} == {"terminated"}

    # LSF's directories were used: state in PRO_DATA_DIR, log in PRO_LSF_LOGDIR.
    assert rid in json.loads(site.state_path.read_text())["requests"]
    assert "requestMachines" in site.log_text()


@pytest.mark.parametrize("user_data, named", [
    ({"1BAD": "x"}, "userData.1BAD"),
    ({"BAD-KEY": "x"}, "userData.BAD-KEY"),
    ({"OK": {"nested": 1}}, "userData.OK"),
])
def test_bad_user_data_is_refused_naming_the_key(lsf_site: HostFactory, user_data: dict[str, Any],
                                                 named: str) -> None:
    site = lsf_site
    _setup(site)
    code, answer = site.call("requestMachines", {
        "template": {"templateId": "LsfBare", "machineCount": 1}, "userData": user_data})
    assert code == 1
    assert answer["message"].startswith(named), answer
    assert site.server.instances() == {}
    state = json.loads(site.state_path.read_text()) if site.state_path.exists() else {
        "requests": {}}
    assert state["requests"] == {}


def test_user_data_cannot_go_into_a_non_shell_script(lsf_site: HostFactory) -> None:
    site = lsf_site
    (site.conf_dir / "cloud.yaml").write_text("#cloud-config\nruncmd: [true]\n")
    site.write_templates([site.template("Cloud", userDataScript="cloud.yaml")])
    code, answer = site.call("requestMachines", {
        "template": {"templateId": "Cloud", "machineCount": 1}, "userData": {"A": "b"}})
    assert code == 1
    assert "shell '#!' line" in answer["message"] and "template 'Cloud'" in answer["message"]
    assert site.server.instances() == {}


@pytest.mark.parametrize("value", ["plain", "it's", "$(touch /tmp/pwned)", "a\nb", "`x`",
                                   "'; echo hi; '", "\\", "", "ünï"])
def test_exported_values_reach_the_shell_unchanged(value: str) -> None:
    script = launch_spec.export_user_data("#!/bin/sh\necho hi\n", {"V": value})
    assert script is not None and script.startswith("#!/bin/sh\nexport V=")
    assert script.endswith("echo hi\n")
    proc = subprocess.run(["sh", "-c", script.replace("echo hi\n", "") + 'printf "%s" "$V"'],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout == value


def test_export_user_data_rules() -> None:
    assert launch_spec.export_user_data("#!/bin/bash\n", {}) == "#!/bin/bash\n"
    assert launch_spec.export_user_data(None, {"N": 3, "B": True}) == (
        "#!/bin/bash\nexport N='3'\nexport B='true'\n")
    assert launch_spec.export_user_data("#!/usr/bin/env bash\r\nrun\r\n", {"K": "v"}) == (
        "#!/usr/bin/env bash\r\nexport K='v'\nrun\r\n")
    for script in ("#!/usr/bin/python3\nprint(1)\n", "#cloud-config\n", "echo no shebang\n"):
        with pytest.raises(ValueError, match="shell '#!' line"):
            launch_spec.export_user_data(script, {"K": "v"})
    for bad in ({"": "v"}, {"9A": "v"}, {"A B": "v"}, {"A=B": "v"}):
        with pytest.raises(ValueError, match=r"^userData\."):
            launch_spec.export_user_data(None, bad)
