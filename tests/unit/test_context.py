"""context.py: where conf, work and log live, from HF_* first, then PRO_*, then the plugin."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from hostfactory_aws import context
from hostfactory_aws.errors import ConfigError

ROOT = context.PLUGIN_ROOT


def test_symphony_variables(tmp_path: Any) -> None:
    ctx = context.resolve({"HF_PROVIDER_NAME": "awsinst", "HF_PROVIDER_CONFDIR": "/hf/conf",
                           "HF_PROVIDER_WORKDIR": "/hf/work", "HF_PROVIDER_LOGDIR": "/hf/log"})
    assert ctx.provider == "awsinst"
    assert (ctx.conf_dir, ctx.work_dir, ctx.log_dir) == ("/hf/conf", "/hf/work", "/hf/log")
    assert ctx.mode == "symphony"
    assert ctx.mem_key == "nram"
    assert ctx.config_path == "/hf/conf/awsprov_config.json"
    assert ctx.templates_path == "/hf/conf/awsprov_templates.json"
    assert ctx.state_path == "/hf/work/awsinst-state.json"


def test_hf_variables_beat_pro_variables() -> None:
    ctx = context.resolve({
        "HF_PROVIDER_NAME": "hfname", "PROVIDER_NAME": "lsfname",
        "HF_PROVIDER_CONFDIR": "/hf/conf", "PRO_CONF_DIR": "/lsf",
        "HF_PROVIDER_WORKDIR": "/hf/work", "PRO_DATA_DIR": "/lsf/data",
        "HF_PROVIDER_LOGDIR": "/hf/log", "PRO_LSF_LOGDIR": "/lsf/log"})
    assert ctx.provider == "hfname"
    assert (ctx.conf_dir, ctx.work_dir, ctx.log_dir) == ("/hf/conf", "/hf/work", "/hf/log")
    assert ctx.mode == "symphony"


def test_lsf_variables() -> None:
    ctx = context.resolve({"PROVIDER_NAME": "aws", "PRO_CONF_DIR": "/lsf/resource_connector/aws",
                           "PRO_DATA_DIR": "/lsf/work", "PRO_LSF_LOGDIR": "/lsf/log"})
    assert ctx.conf_dir == "/lsf/resource_connector/aws/conf"
    assert (ctx.work_dir, ctx.log_dir) == ("/lsf/work", "/lsf/log")
    assert ctx.mode == "lsf"
    assert ctx.mem_key == "mem"


def test_pro_conf_dir_alone_means_lsf() -> None:
    ctx = context.resolve({"PRO_CONF_DIR": "/lsf/aws"})
    assert ctx.mode == "lsf"
    assert ctx.provider == "aws"


def test_empty_variables_are_ignored() -> None:
    ctx = context.resolve({"HF_PROVIDER_CONFDIR": "", "HF_PROVIDER_WORKDIR": "",
                           "PRO_DATA_DIR": "/lsf/work"})
    assert ctx.work_dir == "/lsf/work"
    assert ctx.conf_dir == os.path.join(ROOT, "conf")


def test_standalone_falls_back_to_the_plugin_dirs() -> None:
    ctx = context.resolve({})
    assert ctx.provider == "aws"
    assert ctx.mode == "standalone"
    assert ctx.conf_dir == os.path.join(ROOT, "conf")
    assert ctx.work_dir == os.path.join(ROOT, "work")
    assert ctx.log_dir == os.path.join(ROOT, "log")


def test_never_the_current_directory(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").mkdir()
    ctx = context.resolve({})
    assert not ctx.conf_dir.startswith(str(tmp_path))


def test_relative_dirs_become_absolute(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ctx = context.resolve({"HF_PROVIDER_CONFDIR": "conf", "HF_PROVIDER_WORKDIR": "work"})
    assert ctx.conf_dir == str(tmp_path / "conf")
    assert ctx.work_dir == str(tmp_path / "work")


def test_provider_named_files_are_preferred(tmp_path: Any) -> None:
    (tmp_path / "awsprov_config.json").write_text("{}")
    (tmp_path / "awsprov_templates.json").write_text("{}")
    (tmp_path / "awsinstprov_config.json").write_text("{}")
    ctx = context.resolve({"HF_PROVIDER_NAME": "awsinst", "HF_PROVIDER_CONFDIR": str(tmp_path)})
    assert ctx.config_path == str(tmp_path / "awsinstprov_config.json")
    assert ctx.templates_path == str(tmp_path / "awsprov_templates.json")
    (tmp_path / "awsinstprov_templates.json").write_text("{}")
    ctx = context.resolve({"HF_PROVIDER_NAME": "awsinst", "HF_PROVIDER_CONFDIR": str(tmp_path)})
    assert ctx.templates_path == str(tmp_path / "awsinstprov_templates.json")


def test_other_providers_files_are_not_used(tmp_path: Any) -> None:
    (tmp_path / "otherprov_config.json").write_text("{}")
    ctx = context.resolve({"HF_PROVIDER_NAME": "awsinst", "HF_PROVIDER_CONFDIR": str(tmp_path)})
    assert ctx.config_path == str(tmp_path / "awsprov_config.json")


@pytest.mark.parametrize("name", ["aws inst", "../etc", "a/b", "aws;rm", "x$y"])
def test_bad_provider_name_is_rejected(name: str) -> None:
    with pytest.raises(ConfigError) as exc:
        context.resolve({"HF_PROVIDER_NAME": name})
    assert "HF_PROVIDER_NAME" in str(exc.value)
    with pytest.raises(ConfigError, match="PROVIDER_NAME"):
        context.resolve({"PROVIDER_NAME": name})


@pytest.mark.parametrize("name", ["awsinst", "aws-east_1", "aws.prod"])
def test_good_provider_names(name: str) -> None:
    assert context.resolve({"HF_PROVIDER_NAME": name}).provider == name


def test_config_and_templates_load_once(tmp_path: Any) -> None:
    (tmp_path / "awsprov_config.json").write_text(json.dumps({"AWS_REGION": "eu-west-1"}))
    (tmp_path / "awsprov_templates.json").write_text(json.dumps({"templates": [
        {"templateId": "A", "maxNumber": 1, "imageId": "ami-12345678", "vmType": "t3.micro"}]}))
    ctx = context.resolve({"HF_PROVIDER_CONFDIR": str(tmp_path),
                           "HF_PROVIDER_WORKDIR": str(tmp_path / "work")})
    assert ctx.config["AWS_REGION"] == "eu-west-1"
    assert ctx.template("A")["vmTypes"] == {"t3.micro": 1.0}
    (tmp_path / "awsprov_config.json").write_text("broken")
    assert ctx.config["AWS_REGION"] == "eu-west-1"  # one call, one reading


def test_unknown_template_lists_the_known_ones(tmp_path: Any) -> None:
    (tmp_path / "awsprov_templates.json").write_text(json.dumps({"templates": [
        {"templateId": "A", "maxNumber": 1, "imageId": "ami-12345678", "vmType": "t3.micro"},
        {"templateId": "B", "maxNumber": 1, "imageId": "ami-12345678", "vmType": "t3.micro"}]}))
    ctx = context.resolve({"HF_PROVIDER_CONFDIR": str(tmp_path),
                           "HF_PROVIDER_WORKDIR": str(tmp_path / "work")})
    with pytest.raises(ConfigError) as exc:
        ctx.template("C")
    msg = str(exc.value)
    assert "templateId" in msg and "'C'" in msg and "A, B" in msg


def test_ensure_dirs(tmp_path: Any) -> None:
    ctx = context.resolve({"HF_PROVIDER_WORKDIR": str(tmp_path / "w" / "x"),
                           "HF_PROVIDER_LOGDIR": str(tmp_path / "l")})
    context.ensure_dirs(ctx)
    assert os.path.isdir(ctx.work_dir) and os.path.isdir(ctx.log_dir)


def test_ensure_dirs_failure_names_the_dir(tmp_path: Any) -> None:
    (tmp_path / "file").write_text("")
    ctx = context.resolve({"HF_PROVIDER_WORKDIR": str(tmp_path / "file" / "work"),
                           "HF_PROVIDER_LOGDIR": str(tmp_path / "l")})
    with pytest.raises(ConfigError, match="cannot create directory") as exc:
        context.ensure_dirs(ctx)
    assert str(tmp_path / "file" / "work") in str(exc.value)
