"""The admin command and the scripts read the same state in a real, non-editable install.

A copy of the plugin dir gets a venv inside it (``<plugin>/.venv``) and the package installed
into that venv from a wheel, as ``pip install .`` does: the admin command then runs from
site-packages, the scripts from the plugin dir. Both must find the plugin dir's conf/, work/
and log/; and where the dirs may not be HostFactory's, commands that end hosts refuse.
The venv reuses the test venv's packages (a .pth line), so nothing is downloaded.
"""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest

from hostfactory_aws import __version__
from hostfactory_aws.admin import sandbox
from tests.support.hostfactory import ROOT, SandboxServer

COPIED = ("hostfactory_aws", "scripts", "conf", "setup.cfg", "pyproject.toml", "README.md")


def build_wheel(src: Path, out: Path) -> Path:
    """A wheel of the package as setuptools lays it out (package data included), without
    needing the ``wheel`` package that setuptools < 70 builds wheels with."""
    build = out / "build"
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                    "build_py", "--build-lib", str(build)], cwd=src, check=True,
                   capture_output=True, timeout=120)
    cfg = configparser.ConfigParser()
    cfg.read(src / "setup.cfg")
    dist = f"hostfactory_aws-{__version__}.dist-info"
    wheel = out / f"hostfactory_aws-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path in sorted(build.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, str(path.relative_to(build)))
        zf.writestr(f"{dist}/METADATA", "Metadata-Version: 2.1\nName: hostfactory-aws\n"
                                        f"Version: {__version__}\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: tests\n"
                                     "Root-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/entry_points.txt", "[console_scripts]\n" + "\n".join(
            line.strip() for line in cfg["options.entry_points"]["console_scripts"]
            .splitlines() if line.strip()) + "\n")
        zf.writestr(f"{dist}/RECORD", "")
    return wheel


def make_venv(where: Path, wheel: Path) -> Path:
    """A venv at ``where`` with the test venv's packages visible and the wheel installed."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True,
                   timeout=120)
    py = where / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"], check=True,
                             capture_output=True, text=True).stdout.strip()
    Path(purelib, "_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True,
                   timeout=120)
    return where / "bin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("installed")
    plugin = base / "plugin"
    plugin.mkdir()
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, plugin / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, plugin / name)
    wheel = build_wheel(plugin, base)
    return {"plugin": plugin, "bin": make_venv(plugin / ".venv", wheel),
            "elsewhere": make_venv(base / "other-venv", wheel), "base": base}


@pytest.fixture
def grid(installed: dict[str, Path], moto_server: SandboxServer) -> dict[str, Any]:
    """The plugin dir's own conf pointing at a fresh sandbox; work/ and log/ emptied."""
    server = moto_server
    server.reset()
    plugin = installed["plugin"]
    for d in ("work", "log"):
        shutil.rmtree(plugin / d, ignore_errors=True)
    image = server.image_id()
    subnets = [s["SubnetId"] for s in server.ec2.describe_subnets()["Subnets"]][:2]
    (plugin / "conf" / "awsprov_config.json").write_text(json.dumps(
        {"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": server.url,
         "AWS_REQUEST_RETRY_ATTEMPTS": 0}))
    (plugin / "conf" / "awsprov_templates.json").write_text(json.dumps({"templates": [
        {"templateId": "T", "maxNumber": 10, "imageId": image, "vmType": "m5.large",
         "subnetId": subnets}]}))
    cwd = installed["base"] / "cwd"
    cwd.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(installed["base"]),
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
           "AWS_EC2_METADATA_DISABLED": "true", **sandbox.FAKE_CREDENTIALS,
           **sandbox.endpoint_env(server.url)}
    return {**installed, "env": env, "cwd": cwd, "server": server}


def run(grid: dict[str, Any], exe: Path, *args: str, **extra: str) -> Any:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=grid["cwd"],
                          env={**grid["env"], **extra}, timeout=120)


def script(grid: dict[str, Any], verb: str, payload: dict[str, Any], **extra: str) -> Any:
    path = grid["cwd"] / f"{verb}.json"
    path.write_text(json.dumps(payload))
    proc = run(grid, grid["plugin"] / "scripts" / f"{verb}.sh", "-f", str(path), **extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_admin_command_and_scripts_read_the_same_state(grid: dict[str, Any]) -> None:
    plugin, admin = grid["plugin"], grid["bin"] / "hostfactory-aws"
    req = script(grid, "requestMachines", {"template": {"templateId": "T", "machineCount": 2}})
    assert (plugin / "work" / "aws-state.json").exists()  # the scripts' state: plugin/work

    doctor = run(grid, admin, "doctor", "--json")
    by = {c["check"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert doctor.returncode == 0, doctor.stdout
    assert "site-packages" in by["version"]["detail"]  # really the installed copy
    assert by["conf dir"]["detail"].startswith(f"{plugin / 'conf'} (from conf/ of the plugin "
                                               f"dir {plugin} (found as the parent of the venv")
    assert by["work dir"]["detail"].startswith(str(plugin / "work"))
    assert by["one view"]["status"] == "OK"

    status = run(grid, admin, "status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["stateFile"] == str(plugin / "work" / "aws-state.json")
    assert [r["requestId"] for r in report["requests"]] == [req["requestId"]]
    assert run(grid, admin, "--version").stdout.strip() == f"hostfactory-aws {__version__}"
    entry = run(grid, grid["bin"] / "python", "-m", "hostfactory_aws.invoke_provider",
                "--version")
    assert entry.stdout.strip() == f"hostfactory-aws {__version__}"


def test_scripts_copied_into_hostfactorys_tree_run_the_installed_package(
        grid: dict[str, Any], tmp_path: Path) -> None:
    tree = tmp_path / "hf" / "providerplugins" / "aws"
    shutil.copytree(grid["plugin"] / "scripts", tree / "scripts")
    env = {"HOSTFACTORY_AWS_PYTHON": str(grid["bin"] / "python"), "HF_PROVIDER_NAME": "aws",
           "HF_PROVIDER_CONFDIR": str(grid["plugin"] / "conf"),
           "HF_PROVIDER_WORKDIR": str(tmp_path / "work"),
           "HF_PROVIDER_LOGDIR": str(tmp_path / "log")}
    proc = run(grid, tree / "scripts" / "getAvailableTemplates.sh", **env)
    assert proc.returncode == 0, proc.stderr
    assert [t["templateId"] for t in json.loads(proc.stdout)["templates"]] == ["T"]
    assert (tmp_path / "log" / "aws-hostfactory-aws.log").exists()


def test_orphans_terminate_refuses_where_it_cannot_be_sure(grid: dict[str, Any]) -> None:
    plugin = grid["plugin"]
    script(grid, "requestMachines", {"template": {"templateId": "T", "machineCount": 1}})
    # a machine HostFactory holds, in HostFactory's state: only the plugin's work/ knows it
    live = [i for i in grid["server"].instances().values() if i["State"]["Name"] == "running"]
    assert len(live) == 1

    # 1. an admin shell with some of HostFactory's variables: another work dir, another state
    partial = {"HF_PROVIDER_CONFDIR": str(plugin / "conf"),
               "HF_PROVIDER_LOGDIR": str(plugin / "log")}
    proc = run(grid, grid["bin"] / "hostfactory-aws", "orphans", "--terminate", "--yes",
               **partial)
    assert proc.returncode == 1
    assert "refusing to terminate" in proc.stderr and "HF_PROVIDER_WORKDIR" in proc.stderr
    proc = run(grid, grid["bin"] / "hostfactory-aws", "requestReturnMachines", **partial)
    assert proc.returncode == 1 and "refusing to end hosts" in proc.stderr

    # 2. installed outside any plugin dir: no dirs to trust at all
    other = grid["base"] / "other-venv" / "bin" / "hostfactory-aws"
    proc = run(grid, other, "orphans", "--terminate", "--yes")
    assert proc.returncode == 1
    assert "HF_PROVIDER_WORKDIR" in proc.stderr and "HOSTFACTORY_AWS_HOME" in proc.stderr
    proc = run(grid, other, "status")
    assert proc.returncode == 1 and "no plugin dir was found" in proc.stderr
    assert proc.stderr.count("\n") == 1  # one line, no traceback

    states = {i["InstanceId"]: i["State"]["Name"] for i in grid["server"].instances().values()}
    assert list(states.values()) == ["running"]
