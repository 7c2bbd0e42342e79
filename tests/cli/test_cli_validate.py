"""``hostfactory-aws validate`` (offline): one line per problem naming file, template, field."""

from __future__ import annotations

import json
from typing import Any

from tests.support.hostfactory import PROVIDER, HostFactory, lines


def _invalid(site: HostFactory, *args: str) -> list[str]:
    proc = site.cli("validate", *args)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    err = lines(proc.stderr)
    assert len(err) == 1 and "problem" in err[0], proc.stderr
    return lines(proc.stdout)


def test_valid_files_pass_and_are_named(site: HostFactory) -> None:
    site.write_templates([site.template("A"), site.template("B", vmType="c5.xlarge")])
    proc = site.cli("validate")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert str(site.config_path) in out and str(site.templates_path) in out
    assert "2 templates (A, B)" in out
    assert proc.stderr == ""
    assert site.server.calls() == {}, "offline validation must not call AWS"


def test_templates_file_not_json(site: HostFactory) -> None:
    site.write_templates(None, raw='{"templates": [ {"templateId": "A",} ]}')
    out = _invalid(site)
    assert len(out) == 1
    assert out[0].startswith(f"{site.templates_path}: not valid JSON")
    assert "line 1" in out[0]


def test_unknown_field_gets_a_suggestion(site: HostFactory) -> None:
    site.write_templates([site.template("A", instanceTag="Project=x")])
    out = _invalid(site)
    assert out == [f"{site.templates_path}: template 'A': unknown field 'instanceTag' "
                   "(did you mean 'instanceTags'?)"]


def test_schema_type_error_names_template_and_field(site: HostFactory) -> None:
    site.write_templates([site.template("A"), site.template("B", maxNumber="ten")])
    out = _invalid(site)
    assert len(out) == 1
    assert out[0].startswith(f"{site.templates_path}: template 'B': maxNumber: ")
    assert "'ten'" in out[0] and "integer" in out[0]


def test_combination_aws_would_reject(site: HostFactory) -> None:
    bad = site.template("W", vmType=None, vmTypes={"m5.large": 1, "m5.xlarge": 2},
                        providerApi="RunInstances")
    site.write_templates([site.template("A"), bad])
    out = _invalid(site)
    assert len(out) == 1
    assert out[0].startswith(f"{site.templates_path}: template 'W': vmTypes: ")
    assert "RunInstances" in out[0]


def test_missing_user_data_script(site: HostFactory) -> None:
    site.write_templates([site.template("A", userDataScript="boot.sh")])
    out = _invalid(site)
    assert out == [f"{site.templates_path}: template 'A': userDataScript: no such file "
                   f"{site.conf_dir / 'boot.sh'}"]
    (site.conf_dir / "boot.sh").write_text("#!/bin/bash\ntrue\n")
    assert site.cli("validate").returncode == 0


def test_every_problem_of_both_files_one_line_each(site: HostFactory) -> None:
    site.config_path.write_text(json.dumps({"AWS_REGOIN": "us-east-1"}))
    site.write_templates([site.template("A", maxNumber=-5),
                          site.template("B", keyNmae="k")])
    out = _invalid(site)
    cfg = [x for x in out if x.startswith(f"{site.config_path}: ")]
    tpl = [x for x in out if x.startswith(f"{site.templates_path}: ")]
    assert len(cfg) + len(tpl) == len(out) == 4, out
    assert any("unknown field 'AWS_REGOIN' (did you mean 'AWS_REGION'?)" in x for x in cfg)
    assert any("'AWS_REGION' is required" in x for x in cfg)
    assert any(x.startswith(f"{site.templates_path}: template 'A': maxNumber: ") for x in tpl)
    assert any("template 'B': unknown field 'keyNmae' (did you mean 'keyName'?)" in x
               for x in tpl)


def test_json_output(site: HostFactory) -> None:
    site.write_templates([site.template("A", priceType="cheap")])
    proc = site.cli("validate", "--json")
    assert proc.returncode == 1
    doc: dict[str, Any] = json.loads(proc.stdout)
    assert doc["ok"] is False
    assert len(doc["problems"]) == 1 and "template 'A': priceType" in doc["problems"][0]
    site.write_templates([site.template("A")])
    proc = site.cli("validate", "--json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {
        "ok": True, "config": str(site.config_path), "templates": str(site.templates_path),
        "problems": [], "templateIds": ["A"]}


def test_provider_named_files_win(site: HostFactory) -> None:
    """IBM copies awsprov_templates.json to <provider>prov_templates.json: that one is read."""
    named = site.conf_dir / f"{PROVIDER}prov_templates.json"
    named.write_text(json.dumps({"templates": [site.template("Named", maxNumber="x")]}))
    out = _invalid(site)
    assert out[0].startswith(f"{named}: template 'Named': maxNumber")
