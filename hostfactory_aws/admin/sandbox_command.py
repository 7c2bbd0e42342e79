"""``hostfactory-aws sandbox`` and ``demo``: the plugin by hand, with no AWS account.

``sandbox`` serves the faithful sandbox EC2 (moto with the fixes of admin/sandbox.py) on
loopback, seeds it like a small account (a VPC, two subnets, a security group, a key pair, an
image, an instance profile, a Spot Fleet role), writes a ready conf dir and an ``env.sh`` with
the exports, and serves until Ctrl-C (or, with --background, until ``sandbox --stop``).
Everything then works as in production: the five scripts, and every admin command.

``demo`` does the same in a temporary dir, then runs the real scripts as HostFactory does
(each a separate process, ``-f input.json``) through one request and one return per template.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

REGION = "us-east-1"
PROVIDER = "sandbox"
READY = "env.sh"
PID = "sandbox.pid"
HINT = ("the sandbox needs moto's server: from the plugin dir, pip install '.[sandbox]' "
        "(or pip install 'moto[server]>=5.0')")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default=os.path.join(os.path.expanduser("~"),
                                                 "hostfactory-aws-sandbox"),
                   help="where conf/, work/, log/ and env.sh go (default: %(default)s)")
    p.add_argument("--port", type=int, default=0,
                   help="loopback port to serve on (default: any free port)")
    p.add_argument("--provider", default=PROVIDER, help="provider name (default: %(default)s)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--background", action="store_true",
                      help="serve from a background process; stop it with --stop")
    mode.add_argument("--stop", action="store_true", help="stop the background sandbox")


def sandbox_command(args: argparse.Namespace) -> int:
    base = os.path.abspath(args.dir)
    if args.stop:
        return stop(base)
    if args.background:
        return start_background(base, args.port, args.provider)
    try:
        server, url = start(base, args.port, args.provider)
    except ImportError:
        sys.stderr.write(f"hostfactory-aws sandbox: {HINT}\n")
        return 1
    with open(os.path.join(base, READY), encoding="utf-8") as fh:
        sys.stdout.write(fh.read())
    sys.stdout.flush()
    sys.stderr.write(f"sandbox EC2 at {url}; Ctrl-C stops it (its state goes with it)\n")

    def _stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()
        for name in (READY, PID):
            _remove(os.path.join(base, name))
    return 0


def start(base: str, port: int, provider: str) -> tuple[Any, str]:
    """Serve the sandbox in this process (a thread), seed it, write conf and env.sh."""
    from hostfactory_aws.admin import sandbox

    server, url = sandbox.serve(sandbox.moto_app(), port=port)
    seeded = seed(url)
    write_site(base, url, provider, seeded)
    return server, url


def _client(url: str, service: str) -> Any:
    import boto3

    return boto3.client(service, region_name=REGION, endpoint_url=url,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def seed(url: str) -> dict[str, Any]:
    """A small account: VPC, subnets, security group, key pair, image, roles."""
    ec2, iam = _client(url, "ec2"), _client(url, "iam")
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.77.{i}.0/24",
                                 AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
               for i, az in enumerate("ab")]
    group = ec2.create_security_group(GroupName="grid-compute", Description="grid hosts",
                                      VpcId=vpc)["GroupId"]
    ec2.create_key_pair(KeyName="grid-admin")
    image = ec2.describe_images(Owners=["amazon"], Filters=[
        {"Name": "name", "Values": ["amzn*"]}])["Images"][0]["ImageId"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"Service": ["ec2.amazonaws.com", "spotfleet.amazonaws.com"]}}]})
    iam.create_role(RoleName="grid-compute", AssumeRolePolicyDocument=trust)
    iam.create_instance_profile(InstanceProfileName="grid-compute")
    iam.add_role_to_instance_profile(InstanceProfileName="grid-compute", RoleName="grid-compute")
    fleet_role = iam.create_role(RoleName="aws-ec2-spot-fleet-tagging-role",
                                 AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    return {"vpc": vpc, "subnets": subnets, "securityGroup": group, "keyName": "grid-admin",
            "image": image, "instanceProfile": "grid-compute", "fleetRole": fleet_role}


def templates(seeded: dict[str, Any]) -> list[dict[str, Any]]:
    """One template per way of launching most grids start with."""
    common = {"imageId": seeded["image"], "subnetId": seeded["subnets"],
              "securityGroupIds": [seeded["securityGroup"]],
              "instanceTags": "Project=sandbox;CostCenter=grid",
              "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"],
                             "nram": ["Numeric", "8192"]}}
    return [
        {"templateId": "OnDemand-M5", "maxNumber": 10, "providerApi": "RunInstances",
         "vmType": "m5.large", "keyName": seeded["keyName"],
         "instanceProfile": seeded["instanceProfile"], **common},
        {"templateId": "Spot-Fleet", "maxNumber": 40, "providerApi": "EC2Fleet",
         "fleetType": "instant", "priceType": "spot", "vmTypes": {"m5.large": 1, "m5.xlarge": 2},
         "allocationStrategy": "priceCapacityOptimized", **common},
        {"templateId": "SpotFleet-Request", "maxNumber": 20, "providerApi": "SpotFleet",
         "fleetType": "request", "priceType": "spot", "fleetRole": seeded["fleetRole"],
         "vmTypes": {"m5.large": 1}, **common},
    ]


def site_env(base: str, provider: str, url: str) -> dict[str, str]:
    """The variables HostFactory would set for this site, and the endpoints of the
    services other than EC2 (the config's AWS_ENDPOINT_URL is EC2's alone)."""
    from hostfactory_aws.admin.sandbox import endpoint_env

    return {**endpoint_env(url), "HF_PROVIDER_NAME": provider,
            "HF_PROVIDER_CONFDIR": os.path.join(base, "conf"),
            "HF_PROVIDER_WORKDIR": os.path.join(base, "work"),
            "HF_PROVIDER_LOGDIR": os.path.join(base, "log"),
            "AWS_EC2_METADATA_DISABLED": "true"}


def write_site(base: str, url: str, provider: str, seeded: dict[str, Any]) -> dict[str, str]:
    """conf/ (config pointing at the sandbox, templates over the seeded account), a
    credentials file, and env.sh with the exports; returns the environment."""
    conf = os.path.join(base, "conf")
    for d in (conf, os.path.join(base, "work"), os.path.join(base, "log")):
        os.makedirs(d, exist_ok=True)
    creds = os.path.join(base, "credentials")
    _write(creds, "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    _write(os.path.join(conf, "awsprov_config.json"), json.dumps(
        {"AWS_REGION": REGION, "AWS_ENDPOINT_URL": url, "AWS_CREDENTIAL_FILE": creds,
         "AWS_REQUEST_RETRY_ATTEMPTS": 1, "LogLevel": "INFO"}, indent=2) + "\n")
    _write(os.path.join(conf, "awsprov_templates.json"),
           json.dumps({"templates": templates(seeded)}, indent=2) + "\n")
    env = site_env(base, provider, url)
    lines = [f"# hostfactory-aws sandbox: EC2 at {url} (moto on loopback, no AWS account)",
             f"# source {os.path.join(base, READY)}"]
    lines += [f"export {k}={v}" for k, v in env.items()]
    from hostfactory_aws.context import find_plugin_dir

    root, _ = find_plugin_dir({})
    if root:
        lines.append(f'export PATH="{os.path.join(root, "scripts")}:$PATH"')
    _write(os.path.join(base, READY), "\n".join(lines) + "\n")
    return env


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def start_background(base: str, port: int, provider: str, timeout: float = 60) -> int:
    """The sandbox in a process of its own; prints env.sh once it serves."""
    if _running(base):
        sys.stderr.write(f"hostfactory-aws sandbox: already running in {base} (pid "
                         f"{_pid(base)}); `hostfactory-aws sandbox --dir {base} --stop` "
                         "first\n")
        return 1
    os.makedirs(base, exist_ok=True)
    _remove(os.path.join(base, READY))
    log_path = os.path.join(base, "sandbox.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "hostfactory_aws", "sandbox", "--dir", base, "--port",
             str(port), "--provider", provider], stdin=subprocess.DEVNULL, stdout=log,
            stderr=log, start_new_session=True)
    _write(os.path.join(base, PID), f"{proc.pid}\n")
    ready = os.path.join(base, READY)
    deadline = time.monotonic() + timeout
    while not os.path.exists(ready):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.terminate()
            _remove(os.path.join(base, PID))
            with open(log_path, encoding="utf-8", errors="replace") as fh:
                tail = fh.read()[-500:].strip()
            sys.stderr.write(f"hostfactory-aws sandbox: did not start (see {log_path}): "
                             f"{tail.splitlines()[-1] if tail else 'no output'}\n")
            return 1
        time.sleep(0.1)
    with open(ready, encoding="utf-8") as fh:
        sys.stdout.write(fh.read())
    sys.stderr.write(f"sandbox running in the background (pid {proc.pid}); stop it with "
                     f"`hostfactory-aws sandbox --dir {base} --stop`\n")
    return 0


def _pid(base: str) -> int | None:
    try:
        with open(os.path.join(base, PID), encoding="utf-8") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def _running(base: str) -> bool:
    """The pid file names a live sandbox process (not a recycled pid)."""
    pid = _pid(base)
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return b"sandbox" in cmdline and base.encode() in cmdline


def stop(base: str, timeout: float = 20) -> int:
    pid = _pid(base)
    if pid is None or not _running(base):
        sys.stderr.write(f"hostfactory-aws sandbox: none running in {base}\n")
        _remove(os.path.join(base, PID))
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _running(base) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _running(base):
        sys.stderr.write(f"hostfactory-aws sandbox: pid {pid} did not stop\n")
        return 1
    for name in (READY, PID):
        _remove(os.path.join(base, name))
    sys.stderr.write(f"sandbox stopped (pid {pid})\n")
    return 0


# -- demo ----------------------------------------------------------------------------------

def run_demo(out: Callable[[str], None] = print, progress: Callable[[str], None] | None = None,
             machine_count: int = 2) -> int:
    """The whole HostFactory cycle: the real scripts, each a process, against the sandbox."""
    from hostfactory_aws.context import find_plugin_dir

    say = progress or (lambda s: sys.stderr.write(s + "\n"))
    root, how = find_plugin_dir({})
    if root is None:
        sys.stderr.write(f"hostfactory-aws demo: the demo runs the scripts, and none are "
                         f"beside this install ({how}); run it from the plugin dir\n")
        return 1
    try:
        import moto  # noqa: F401
        import werkzeug  # noqa: F401
    except ImportError:
        sys.stderr.write(f"hostfactory-aws demo: {HINT}\n")
        return 1
    with tempfile.TemporaryDirectory(prefix="hostfactory-aws-demo-") as tmp:
        server, url = start(tmp, 0, "awsdemo")
        env = {**os.environ, **site_env(tmp, "awsdemo", url), "HOSTFACTORY_AWS_PYTHON":
               sys.executable}
        env.pop("AWS_ENDPOINT_URL", None)
        scripts = os.path.join(root, "scripts")
        try:
            say(f"demo: sandbox EC2 at {url}, provider 'awsdemo', dirs under {tmp}")
            return _cycle(scripts, env, tmp, out, say, machine_count)
        finally:
            server.shutdown()


def _cycle(scripts: str, env: dict[str, str], tmp: str, out: Callable[[str], None],
           say: Callable[[str], None], count: int) -> int:
    step = [0]

    def call(verb: str, data: dict[str, Any]) -> dict[str, Any]:
        step[0] += 1
        path = os.path.join(tmp, f"input-{step[0]:02d}-{verb}.json")
        _write(path, json.dumps(data))
        proc = subprocess.run([os.path.join(scripts, f"{verb}.sh"), "-f", path], env=env,
                              capture_output=True, text=True, cwd=tmp, timeout=120)
        out(f"$ {verb}.sh -f {os.path.basename(path)}    # {json.dumps(data)}")
        answer = json.loads(proc.stdout)
        out(json.dumps(answer, indent=2))
        if proc.returncode:
            raise SystemExit(f"demo: {verb}.sh exited {proc.returncode}: "
                             f"{answer.get('message')}")
        return answer

    call("getAvailableTemplates", {})
    for template in ("OnDemand-M5", "Spot-Fleet"):
        say(f"demo: requesting {count} units of {template}")
        req = call("requestMachines", {"template": {"templateId": template,
                                                    "machineCount": count}})
        status = _poll(call, req["requestId"])
        hosts = [{"name": m["name"], "machineId": m["machineId"]} for m in status["machines"]]
        call("getReturnRequests", {"machines": hosts})
        say(f"demo: returning {len(hosts)} machines of {template}")
        ret = call("requestReturnMachines", {"machines": hosts})
        _poll(call, ret["requestId"])
    say("demo: done; each script ran as its own process and printed one JSON document")
    return 0


def _poll(call: Callable[[str, dict[str, Any]], dict[str, Any]], rid: str) -> dict[str, Any]:
    for _ in range(10):
        answer = call("getRequestStatus", {"requests": [{"requestId": rid}]})["requests"][0]
        if answer["status"] != "running":
            return answer
        time.sleep(0.5)
    raise SystemExit(f"demo: {rid} still running after 10 polls")
