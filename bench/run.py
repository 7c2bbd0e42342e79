"""Benchmark the five verbs the way HostFactory runs them: one process per call, against moto.

    python bench/run.py             # machines 1,10,100,1000,5000,10000; requests 1,10,100,500
    python bench/run.py --quick     # machines 1,10,100; requests 1,10; 3 runs
    python bench/run.py --scales 1,1000 --requests 10 --kinds RunInstances

moto's server runs in this process on 127.0.0.1; each verb runs as
``scripts/<verb>.sh -f input.json`` with the HF_PROVIDER_* environment, as HostFactory
calls it. For every verb and scale: median/min/max wall time, the AWS calls it made (by
action, from the sandbox's call counter), the seconds moto spent answering (so the
plugin's own share is visible: moto is far slower than EC2 at thousands of instances) and
the child's peak RSS (os.wait4 on the child's pid). Floors (``python -c pass`` and the stock
one-call boto3 script) are measured in the same run, interleaved with the verbs they are
compared with; every row shows its ratio to both. The targets of issues 6 and 15 are printed
as PASS/FAIL, with the machine's load average. Results also go to bench/results.json.

Runs per cell: up to --runs, but a cell stops repeating once its runs took --budget
seconds (at least one run), so the slow 5000-machine cells run once or twice; the table
shows n for every cell.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from hostfactory_aws.admin import sandbox  # noqa: E402

VERBS = ("getAvailableTemplates", "requestMachines", "getRequestStatus",
         "requestReturnMachines", "getReturnRequests")
# One entry per provisioning API: the template fields that select it. Adding an API to the
# benchmark is adding a line here.
KINDS: dict[str, dict[str, Any]] = {
    "RunInstances": {"providerApi": "RunInstances", "vmType": "m5.large"},
    "EC2Fleet": {"providerApi": "EC2Fleet", "fleetType": "instant",
                 "vmTypes": {"m5.large": 1}},
}
MACHINE_SCALES = (1, 10, 100, 1000, 5000, 10000)
REQUEST_SCALES = (1, 10, 100, 500)
MACHINES_PER_REQUEST = 2          # "a few machines each" in the open-requests scenarios
RUN_INSTANCES_BATCH = 100         # hostfactory_aws.cloud.apis.run_instances.BATCH
DESCRIBE_PAGE = 1000              # hostfactory_aws.cloud.instances.PAGE
ACTION_TIMEOUT = 240              # HF_PROVIDER_ACTION_TIMEOUT in published configs
# issue 15: against the stock boto3 floor, our own seconds and peak RSS at 5,000 machines
FLOOR_RATIO = 0.75
BIG, BIG_OWN_S, BIG_RSS_MB = 5000, 5.0, 150
PROVIDER = "bench"
ATTRIBUTES = {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"],
              "ncores": ["Numeric", "1"], "nram": ["Numeric", "8192"]}
FLOOR_PASS = "python -c pass"
FLOOR_BOTO3 = "boto3 one call"
BOTO3_FLOOR_CODE = ("import boto3; boto3.client('ec2', region_name='us-east-1', "
                    "endpoint_url={url!r}).describe_instances(MaxResults=5)")


# --------------------------------------------------------------------------- moto server

def index_moto_tags() -> None:
    """Make moto find a resource's tags by its id instead of scanning every tag it holds.

    moto 5 answers ``get_tags()`` (used for each instance listed, filtered or tagged) by
    running a regex over every tag of every resource in the account, so DescribeInstances
    over 5,000 tagged instances takes minutes (quadratic); EC2 does not behave like that.
    The same answer from the backend's own per-resource dict keeps moto's time linear. Only
    the sandbox's speed changes: the plugin sends and receives exactly the same.
    """
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    if getattr(TaggedEC2Resource.get_tags, "_bench", False):
        return

    def get_tags(self: Any) -> list[dict[str, str]]:
        if not self.id:
            return []
        tags = self.ec2_backend.tags.get(self.id) or {}
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(self.id), "")
        return [{"resource_id": self.id, "key": k, "value": v, "resource_type": kind}
                for k, v in tags.items()]

    get_tags._bench = True  # type: ignore[attr-defined]
    TaggedEC2Resource.get_tags = get_tags  # type: ignore[method-assign]


class TimedApp:
    """WSGI middleware: seconds the wrapped app spent on requests (body included)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seconds = 0.0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        start = time.perf_counter()
        try:
            body = list(self.app(environ, start_response))  # serialisation is moto's time too
        finally:
            with self._lock:
                self.seconds += time.perf_counter() - start
        return body


class Moto:
    """moto's server on loopback, its call counter and the time it spent answering."""

    def __init__(self) -> None:
        self.counter = sandbox.CallCounter(sandbox.moto_app())
        index_moto_tags()
        self.timed = TimedApp(self.counter)
        self.server, self.url = sandbox.serve(self.timed)
        self._image: str | None = None
        import boto3

        self.ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=self.url,
                                aws_access_key_id="testing", aws_secret_access_key="testing")

    def _http(self, method: str, path: str) -> bytes:
        req = urllib.request.Request(self.url + path, method=method)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
        with opener.open(req, timeout=60) as resp:
            return resp.read()

    def reset_calls(self) -> None:
        self._http("DELETE", "/_hf/calls")
        self.timed.seconds = 0.0

    def calls(self) -> dict[str, int]:
        return json.loads(self._http("GET", "/_hf/calls"))

    def reset(self) -> None:
        """Forget every resource: each scenario starts from an empty account."""
        self._http("POST", "/moto-api/reset")

    def discover(self) -> tuple[str, list[str]]:
        """A moto AMI, and three /18 subnets of a new VPC (new ids after every reset).

        Not moto's default subnets: they are /20 (4,091 addresses), and where EC2 would
        answer InsufficientFreeAddressesInSubnet (and the plugin move on to the next
        subnet) moto fails with an internal error, so 5,000 machines cannot be launched.
        """
        if self._image is None:  # moto's AMI ids survive a reset
            self._image = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [self.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{64 * i}.0/18",
                                          AvailabilityZone=f"us-east-1{az}")["Subnet"]["SubnetId"]
                   for i, az in enumerate("abc")]
        return self._image, subnets

    def stop(self) -> None:
        self.server.shutdown()


# --------------------------------------------------------------------------- one child

# Children are started by this small helper, not by the benchmark itself: Linux carries a
# process's peak RSS across fork and exec, so a child of the 200 MB benchmark (moto) would
# report 200 MB whatever it used. The helper runs without site (~11 MB), below any child.
LAUNCHER = r"""
import json, os, subprocess, sys, time
for line in sys.stdin:
    job = json.loads(line)
    with open(job["stdout"], "wb") as out, open(job["stderr"], "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(job["cmd"], env=job["env"], cwd=job["cwd"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    print(json.dumps({"wall": wall, "code": proc.returncode, "rss_kb": usage.ru_maxrss,
                      "cpu": usage.ru_utime + usage.ru_stime}), flush=True)
"""


class Launcher:
    """Runs one command at a time in the helper; returns wall, exit code, peak RSS, CPU."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-S", "-u", "-c", LAUNCHER],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)  # its children share its group
        self.lock = threading.Lock()

    def run(self, cmd: list[str], env: dict[str, str], cwd: str, stdout: str,
            stderr: str) -> dict[str, Any]:
        job = {"cmd": cmd, "env": env, "cwd": cwd, "stdout": stdout, "stderr": stderr}
        with self.lock:
            assert self.proc.stdin and self.proc.stdout
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise BenchError("the launcher helper died")
        return json.loads(line)

    def close(self, kill: bool = False) -> None:
        """Stop the helper; with kill, also the child it is running (its process group)."""
        if kill and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


@dataclass
class Sample:
    wall: float
    moto: float
    cpu: float
    rss_kb: int
    calls: dict[str, int]
    code: int
    answer: Any
    stderr: str


@dataclass
class Cell:
    """Every run of one verb in one scenario."""
    kind: str
    scenario: str
    scale: int
    verb: str
    samples: list[Sample] = field(default_factory=list)
    note: str = ""

    def walls(self) -> list[float]:
        return [s.wall for s in self.samples]

    def summary(self) -> dict[str, Any]:
        walls = self.walls()
        calls = [s.calls for s in self.samples]
        out = {
            "kind": self.kind, "scenario": self.scenario, "scale": self.scale, "verb": self.verb,
            "n": len(walls), "wall_s": [round(w, 4) for w in walls],
            "median_s": round(statistics.median(walls), 4) if walls else None,
            "min_s": round(min(walls), 4) if walls else None,
            "max_s": round(max(walls), 4) if walls else None,
            "moto_median_s": round(statistics.median(s.moto for s in self.samples), 4)
            if walls else None,
            "own_median_s": round(statistics.median(s.wall - s.moto for s in self.samples), 4)
            if walls else None,
            "cpu_median_s": round(statistics.median(s.cpu for s in self.samples), 4)
            if walls else None,
            "rss_max_mb": round(max(s.rss_kb for s in self.samples) / 1024, 1) if walls else None,
            "calls": calls[-1] if calls else {},
            "calls_same_every_run": all(c == calls[0] for c in calls),
            "failures": [s.answer for s in self.samples if s.code != 0],
        }
        if self.note:
            out["note"] = self.note
        return out


class Bench:
    def __init__(self, args: argparse.Namespace, moto: Moto) -> None:
        self.args = args
        self.moto = moto
        self.root = os.path.abspath(args.root)
        self.tmp = tempfile.mkdtemp(prefix="hostfactory-aws-bench-")
        self.conf = os.path.join(self.tmp, "conf")
        self.work = os.path.join(self.tmp, "work")
        self.logs = os.path.join(self.tmp, "log")
        os.makedirs(self.conf)
        env = {k: v for k, v in os.environ.items()
               if not k.upper().startswith(("AWS_", "HF_PROVIDER_", "PRO_", "PROVIDER_NAME"))
               and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        env.update(sandbox.FAKE_CREDENTIALS)
        env.update(sandbox.endpoint_env(moto.url))
        env.update({"HF_PROVIDER_NAME": PROVIDER, "HF_PROVIDER_CONFDIR": self.conf,
                    "HF_PROVIDER_WORKDIR": self.work, "HF_PROVIDER_LOGDIR": self.logs,
                    "HOSTFACTORY_AWS_PYTHON": sys.executable,
                    # no stray AWS config of this machine, no metadata service
                    "AWS_CONFIG_FILE": os.path.join(self.tmp, "no-aws-config"),
                    "AWS_SHARED_CREDENTIALS_FILE": os.path.join(self.tmp, "no-aws-credentials"),
                    "AWS_EC2_METADATA_DISABLED": "true",
                    "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
        self.env = env
        self.launcher = Launcher()
        self.cells: list[Cell] = []
        self.scenarios: list[dict[str, Any]] = []
        self._templates_text = ""
        self._seq = itertools.count()  # set-up calls run on two threads

    # -- running one process ------------------------------------------------------------

    def spawn(self, cmd: list[str], env: dict[str, str] | None = None,
              timed: bool = True) -> Sample:
        """One child process; untimed ones (parallel set-up) skip the helper and counters."""
        n = next(self._seq)
        out, err = os.path.join(self.tmp, f"out-{n}"), os.path.join(self.tmp, f"err-{n}")
        if timed:
            self.moto.reset_calls()
            got = self.launcher.run(cmd, env or self.env, self.tmp, out, err)
            moto_s, calls = self.moto.timed.seconds, self.moto.calls()
        else:
            with open(out, "wb") as fo, open(err, "wb") as fe:
                proc = subprocess.run(cmd, env=env or self.env, cwd=self.tmp, stdout=fo,
                                      stderr=fe, stdin=subprocess.DEVNULL)
            got = {"wall": 0.0, "code": proc.returncode, "rss_kb": 0, "cpu": 0.0}
            moto_s, calls = 0.0, {}
        with open(out, encoding="utf-8") as fh:
            text = fh.read()
        with open(err, encoding="utf-8", errors="replace") as fh:
            errtext = fh.read()
        os.unlink(out)
        os.unlink(err)
        try:
            answer = json.loads(text) if text.strip() else None
        except ValueError:
            answer = {"unparsable stdout": text[:500]}
        return Sample(got["wall"], moto_s, got["cpu"], got["rss_kb"], calls, got["code"],
                      answer, errtext)

    def verb(self, verb: str, data: dict[str, Any], env: dict[str, str] | None = None,
             timed: bool = True) -> Sample:
        path = os.path.join(self.tmp, f"in-{next(self._seq)}.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        sample = self.spawn([os.path.join(self.root, "scripts", f"{verb}.sh"), "-f", path],
                            env, timed)
        os.unlink(path)
        if sample.code != 0:
            raise BenchError(f"{verb} failed (exit {sample.code}): {sample.answer} "
                             f"{sample.stderr[-2000:]}")
        return sample

    def floor(self, name: str) -> Sample:
        if name == FLOOR_PASS:
            return self.spawn([sys.executable, "-c", "pass"])
        return self.spawn([sys.executable, "-c", BOTO3_FLOOR_CODE.format(url=self.moto.url)])

    def cell(self, kind: str, scenario: str, scale: int, verb: str, note: str = "") -> Cell:
        c = Cell(kind, scenario, scale, verb, note=note)
        self.cells.append(c)
        return c

    def repeat(self, cells: list[Cell], funcs: list[Callable[[], Sample]],
               runs: int | None = None) -> None:
        """Run each func into its cell, interleaved, until runs or the time budget is used."""
        runs = runs or self.args.runs
        spent = 0.0
        for i in range(runs):
            if i and spent >= self.args.budget:
                break
            for c, f in zip(cells, funcs):
                s = f()
                c.samples.append(s)
                spent += s.wall

    # -- scenario set-up ----------------------------------------------------------------

    def fresh(self, kind: str) -> str:
        """Empty account, empty work dir, this kind's template; returns the template id."""
        self.moto.reset()
        image, subnets = self.moto.discover()
        tid = f"bench-{kind}"
        template = {"templateId": tid, "maxNumber": -1, "imageId": image,
                    "subnetId": subnets, "attributes": ATTRIBUTES,
                    "instanceTags": "Project=bench", **KINDS[kind]}
        self.write_conf({"templates": [template]})
        self.clear_work()
        # Steady state: HostFactory polls getAvailableTemplates all the time, so the files'
        # schema check has passed before the calls we time (the first call is timed apart).
        self.verb("getAvailableTemplates", {})
        return tid

    def clear_work(self) -> None:
        """A work dir as after a fresh install, but with the lean botocore models that the
        first AWS call made (once per botocore version: not what a verb costs)."""
        for name in os.listdir(self.work) if os.path.isdir(self.work) else []:
            path = os.path.join(self.work, name)
            if name.startswith("botocore-models-"):
                continue
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)

    def write_conf(self, templates: dict[str, Any]) -> None:
        # moto needs over a minute to list 5,000 instances on a busy machine (EC2: seconds);
        # the default 60 s read timeout would turn that into retries.
        config = {"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.moto.url,
                  "AWS_READ_TIMEOUT_MS": 900000, "LogLevel": "INFO"}
        with open(os.path.join(self.conf, "awsprov_config.json"), "w") as fh:
            json.dump(config, fh, indent=2)
        with open(os.path.join(self.conf, "awsprov_templates.json"), "w") as fh:
            json.dump(templates, fh, indent=2)

    def state_bytes(self) -> int:
        try:
            return os.path.getsize(os.path.join(self.work, f"{PROVIDER}-state.json"))
        except OSError:
            return 0

    def request(self, tid: str, count: int, timed: bool = True) -> Sample:
        return self.verb("requestMachines",
                         {"template": {"templateId": tid, "machineCount": count}}, timed=timed)

    # -- scenarios ------------------------------------------------------------------------

    def floors(self) -> None:
        """Floors and getAvailableTemplates, interleaved so load hits them alike."""
        kind = next(iter(self.args.kinds))
        self.fresh(kind)
        first = self.cell("-", "first call", 0, "getAvailableTemplates",
                          note="files new to the work dir: full schema check")

        def first_call() -> Sample:
            self.clear_work()
            return self.verb("getAvailableTemplates", {})

        self.repeat([first], [first_call])
        imports = self.imported_by("getAvailableTemplates", {})
        cells = [self.cell("-", "floor", 0, FLOOR_PASS),
                 self.cell("-", "floor", 0, FLOOR_BOTO3, note="empty account"),
                 self.cell("-", "steady", 0, "getAvailableTemplates")]
        self.repeat(cells, [lambda: self.floor(FLOOR_PASS), lambda: self.floor(FLOOR_BOTO3),
                            lambda: self.verb("getAvailableTemplates", {})],
                    runs=max(self.args.runs, 5))
        self.scenarios.append({"kind": "-", "scenario": "floor", "scale": 0,
                               "getAvailableTemplates_imports": imports})

    def imported_by(self, verb: str, data: dict[str, Any]) -> list[str]:
        """Top-level packages a verb imports (PYTHONPROFILEIMPORTTIME), for the boto3 check."""
        env = {**self.env, "PYTHONPROFILEIMPORTTIME": "1"}
        sample = self.verb(verb, data, env)
        names = set()
        for line in sample.stderr.splitlines():
            m = re.match(r"import time:\s+\d+ \|\s+\d+ \| (\s*)([\w.]+)", line)
            if m:
                names.add(m.group(2).split(".")[0])
        return sorted(names)

    def machines(self, kind: str, scale: int) -> None:
        """requestMachines for `scale` machines, then every verb over them."""
        name = f"machines={scale}"
        fl = self.cell(kind, name, scale, FLOOR_BOTO3, note="before each requestMachines")
        rm = self.cell(kind, name, scale, "requestMachines", note="fresh account each run")
        gs = self.cell(kind, name, scale, "getRequestStatus")
        ga = self.cell(kind, name, scale, "getAvailableTemplates")
        gr = self.cell(kind, name, scale, "getReturnRequests")
        rr = self.cell(kind, name, scale, "requestReturnMachines", note="returns all machines")
        gd = self.cell(kind, name, scale, "getRequestStatus (return)")
        state_size = 0
        for cycle in range(self.args.runs):
            if cycle and sum(rm.walls()) >= self.args.budget:
                break
            tid = self.fresh(kind)
            fl.samples.append(self.floor(FLOOR_BOTO3))
            sample = self.request(tid, scale)
            rm.samples.append(sample)
            rid = sample.answer["requestId"]
            status_in = {"requests": [{"requestId": rid}]}
            if cycle == 0:
                self.repeat([gs], [lambda d=status_in: self.verb("getRequestStatus", d)])
                state_size = self.state_bytes()
                self.repeat([ga], [lambda: self.verb("getAvailableTemplates", {})])
                hosts = machines_of(gs.samples[-1].answer, rid)
                check(len(hosts) == scale, f"{kind}: asked {scale}, status lists {len(hosts)}")
                held = {"machines": hosts}
                self.repeat([gr], [lambda d=held: self.verb("getReturnRequests", d)])
            elif sum(rr.walls()) < self.args.budget:
                hosts = machines_of(self.verb("getRequestStatus", status_in).answer, rid)
            else:
                continue
            ret = self.verb("requestReturnMachines", {"machines": hosts})
            rr.samples.append(ret)
            gd.samples.append(self.verb("getRequestStatus", {"requests": [
                {"requestId": ret.answer["requestId"]}]}))
        self.scenarios.append({"kind": kind, "scenario": name, "scale": scale,
                               "state_bytes": state_size})

    def requests(self, kind: str, count: int) -> None:
        """`count` open requests of a few machines each, polled together."""
        name = f"requests={count}"
        tid = self.fresh(kind)
        timed = min(count, self.args.runs)
        ids: list[str] = []
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # untimed set-up, 2 at a time
            for sample in pool.map(lambda _: self.request(tid, MACHINES_PER_REQUEST, False),
                                   range(count - timed)):
                ids.append(sample.answer["requestId"])
        rm = self.cell(kind, name, count, "requestMachines",
                       note=f"{MACHINES_PER_REQUEST} machines, with {count - timed}+ open requests")
        for _ in range(timed):
            sample = self.request(tid, MACHINES_PER_REQUEST)
            rm.samples.append(sample)
            ids.append(sample.answer["requestId"])
        status_in = {"requests": [{"requestId": r} for r in ids]}
        gs = self.cell(kind, name, count, "getRequestStatus")
        fl = self.cell(kind, name, count, FLOOR_BOTO3, note="same account state")
        self.repeat([fl, gs], [lambda: self.floor(FLOOR_BOTO3),
                               lambda: self.verb("getRequestStatus", status_in)])
        answer = gs.samples[-1].answer
        hosts = [h for r in ids for h in machines_of(answer, r)]
        check(len(hosts) == count * MACHINES_PER_REQUEST,
              f"{kind}: {count} requests list {len(hosts)} machines")
        ga = self.cell(kind, name, count, "getAvailableTemplates")
        self.repeat([ga], [lambda: self.verb("getAvailableTemplates", {})])
        gr = self.cell(kind, name, count, "getReturnRequests")
        self.repeat([gr], [lambda: self.verb("getReturnRequests", {"machines": hosts})])
        self.scenarios.append({"kind": kind, "scenario": name, "scale": count,
                               "machines": len(hosts), "state_bytes": self.state_bytes()})


class BenchError(Exception):
    pass


def check(ok: bool, what: str) -> None:
    if not ok:
        raise BenchError(what)


def machines_of(answer: dict[str, Any], rid: str) -> list[dict[str, str]]:
    for req in answer["requests"]:
        if req["requestId"] == rid:
            return [{"name": m["name"], "machineId": m["machineId"]} for m in req["machines"]]
    raise BenchError(f"{rid} missing from getRequestStatus answer")


# --------------------------------------------------------------------------- targets

def find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def targets(rows: list[dict[str, Any]], scenarios: list[dict[str, Any]],
            kinds: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, ok: bool | None, detail: str) -> None:
        out.append({"target": name, "result": "n/a" if ok is None else
                    ("PASS" if ok else "FAIL"), "detail": detail})

    floor = find(rows, verb=FLOOR_PASS)
    gat = find(rows, scenario="steady", verb="getAvailableTemplates")
    imports = next((s["getAvailableTemplates_imports"] for s in scenarios
                    if "getAvailableTemplates_imports" in s), [])
    heavy = sorted(set(imports) & {"boto3", "botocore", "jsonschema"})
    add("getAvailableTemplates imports neither boto3 nor jsonschema", not heavy,
        f"heavy imports: {', '.join(heavy) or 'none'}; AWS calls: {gat and gat['calls']}")
    if floor and gat:
        ratio = gat["median_s"] / floor["median_s"]
        add("getAvailableTemplates <= 2x python -c pass", ratio <= 2.0,
            f"{gat['median_s']:.3f}s / {floor['median_s']:.3f}s = {ratio:.2f}x (medians)")
    for kind in kinds:
        gs = find(rows, kind=kind, scenario="requests=10", verb="getRequestStatus")
        fl = find(rows, kind=kind, scenario="requests=10", verb=FLOOR_BOTO3)
        pairs = [("requests=10", "getRequestStatus", gs, fl)]
        fl10 = find(rows, kind=kind, scenario="machines=10", verb=FLOOR_BOTO3)
        for verb in ("requestMachines", "requestReturnMachines"):
            pairs.append(("machines=10", verb,
                          find(rows, kind=kind, scenario="machines=10", verb=verb), fl10))
        for scenario, verb, row, base in pairs:
            name = f"{kind}: {verb}, {scenario} <= {FLOOR_RATIO}x one-call boto3 floor"
            if row and base:
                ratio = row["median_s"] / base["median_s"]
                add(name, ratio <= FLOOR_RATIO,
                    f"{row['median_s']:.3f}s / {base['median_s']:.3f}s = {ratio:.2f}x (medians, "
                    "interleaved)")
            else:
                add(name, None, f"scenario {scenario} not run")
        per_n = {r["scale"]: r["calls"].get("DescribeInstances", 0) for r in rows
                 if r["kind"] == kind and r["verb"] == "getRequestStatus"
                 and r["scenario"].startswith("requests=")}
        if len(per_n) > 1:
            add(f"{kind}: getRequestStatus DescribeInstances calls do not grow with requests",
                len(set(per_n.values())) == 1,
                ", ".join(f"{n} requests: {c}" for n, c in sorted(per_n.items())))
        for r in rows:
            if r["kind"] == kind and r["verb"] == "getRequestStatus" and \
                    r["scenario"].startswith("machines="):
                calls = r["calls"].get("DescribeInstances", 0)
                most = max(1, math.ceil(r["scale"] / DESCRIBE_PAGE))
                add(f"{kind}: getRequestStatus, {r['scale']} machines: <= 1 DescribeInstances "
                    f"page per {DESCRIBE_PAGE}", calls <= most,
                    f"{calls} DescribeInstances (at most {most}); all calls {r['calls']}")
    for kind in kinds:
        big = [r for r in rows if r["kind"] == kind and r["scenario"] == f"machines={BIG}"
               and r["verb"] != FLOOR_BOTO3]
        for verb in ("requestMachines", "getRequestStatus", "requestReturnMachines"):
            r = find(big, verb=verb)
            if r:
                add(f"{kind}: {verb}, {BIG} machines: own time < {BIG_OWN_S:g}s",
                    r["own_median_s"] < BIG_OWN_S,
                    f"own {r['own_median_s']:.2f}s (cpu {r['cpu_median_s']:.2f}s), moto "
                    f"{r['moto_median_s']:.2f}s; {r['calls']}")
        if big:
            worst = max(big, key=lambda r: r["rss_max_mb"])
            add(f"{kind}: peak RSS at {BIG} machines < {BIG_RSS_MB} MB",
                worst["rss_max_mb"] < BIG_RSS_MB,
                f"{worst['rss_max_mb']:.0f} MB ({worst['verb']})")
        for r in rows:
            if r["kind"] == kind and r["verb"] == "requestReturnMachines":
                calls = r["calls"].get("DescribeInstances", 0)
                most = max(1, math.ceil(r["scale"] / DESCRIBE_PAGE))
                add(f"{kind}: requestReturnMachines, {r['scale']} machines: <= 1 "
                    f"DescribeInstances per {DESCRIBE_PAGE}", calls <= most,
                    f"{calls} DescribeInstances (at most {most}); all calls {r['calls']}")
        rm = find(rows, kind=kind, scenario="machines=5000", verb="requestMachines")
        if rm is None:
            continue
        inside = rm["max_s"] <= ACTION_TIMEOUT / 2
        if kind == "RunInstances":
            want = math.ceil(5000 / RUN_INSTANCES_BATCH)
            got = rm["calls"].get("RunInstances", 0)
            add("RunInstances: requestMachines 5000 in batched calls", got == want,
                f"{got} RunInstances calls (expected {want}, batch {RUN_INSTANCES_BATCH})")
        else:
            add(f"{kind}: requestMachines 5000 calls", None, f"{rm['calls']}")
        add(f"{kind}: requestMachines 5000 well inside {ACTION_TIMEOUT}s (< half)", inside,
            f"max {rm['max_s']:.1f}s of which moto {rm['moto_median_s']:.1f}s (median)")
    for s in scenarios:
        if s.get("state_bytes"):
            machines = s.get("machines", s["scale"])
            add(f"{s['kind']}: state file at {s['scenario']}", None,
                f"{s['state_bytes']:,} bytes ({s['state_bytes'] / max(machines, 1):.0f} "
                "bytes per machine)")
    return out


# --------------------------------------------------------------------------- output

def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's median over the floors': ``python -c pass``, and the stock boto3 one-call
    script measured beside it (its own scenario's, else the empty-account one)."""
    plain = find(rows, verb=FLOOR_PASS)
    for r in rows:
        boto = (find(rows, kind=r["kind"], scenario=r["scenario"], verb=FLOOR_BOTO3)
                or find(rows, scenario="floor", verb=FLOOR_BOTO3))
        r["x_pass"] = round(r["median_s"] / plain["median_s"], 2) if plain else None
        r["x_boto3"] = round(r["median_s"] / boto["median_s"], 2) if boto else None


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = ("kind", "scenario", "verb", "n", "median", "min", "max", "moto", "own", "cpu",
            "RSS MB", "x pass", "x boto3", "AWS calls")
    lines = []
    for r in rows:
        calls = ", ".join(f"{k}={v}" for k, v in sorted(r["calls"].items())) or "-"
        if not r["calls_same_every_run"]:
            calls += " (varied)"
        lines.append((r["kind"], r["scenario"], r["verb"], str(r["n"]),
                      f"{r['median_s']:.3f}", f"{r['min_s']:.3f}", f"{r['max_s']:.3f}",
                      f"{r['moto_median_s']:.3f}", f"{r['own_median_s']:.3f}",
                      f"{r['cpu_median_s']:.3f}", f"{r['rss_max_mb']:.0f}", _x(r.get("x_pass")),
                      _x(r.get("x_boto3")), calls))
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head) - 1)]
    fmt = "  ".join(f"{{:{'>' if 3 <= i <= 12 else '<'}{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*head[:-1]) + "  " + head[-1]]
    out += [fmt.format(*x[:-1]) + "  " + x[-1] for x in lines]
    return "\n".join(out)


def markdown(rows: list[dict[str, Any]]) -> str:
    out = ["| kind | scenario | verb | n | median s | min s | max s | moto s | own s | "
           "cpu s | RSS MB | x pass | x boto3 | AWS calls |", "|" + "---|" * 14]
    for r in rows:
        calls = ", ".join(f"{k}={v}" for k, v in sorted(r["calls"].items())) or "-"
        out.append(f"| {r['kind']} | {r['scenario']} | {r['verb']} | {r['n']} | "
                   f"{r['median_s']:.3f} | {r['min_s']:.3f} | {r['max_s']:.3f} | "
                   f"{r['moto_median_s']:.3f} | {r['own_median_s']:.3f} | "
                   f"{r['cpu_median_s']:.3f} | {r['rss_max_mb']:.0f} | {_x(r.get('x_pass'))} | "
                   f"{_x(r.get('x_boto3'))} | {calls} |")
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="machines 1,10,100; requests 1,10; 3 runs")
    p.add_argument("--scales", help="machine counts, e.g. 1,100,1000,5000")
    p.add_argument("--requests", help="open-request counts, e.g. 1,10,100")
    p.add_argument("--kinds", help=f"provider APIs, from {','.join(KINDS)}")
    p.add_argument("--runs", type=int, help="runs per cell (default 5, --quick 3)")
    p.add_argument("--budget", type=float, default=12.0,
                   help="stop repeating a cell after this many seconds (default 12)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results.json"))
    p.add_argument("--root", default=ROOT, help="plugin tree whose scripts/ to run "
                   "(to compare a before/after copy)")
    p.add_argument("--markdown", action="store_true", help="also print a markdown table")
    args = p.parse_args(argv)

    def ints(text: str | None, default: tuple[int, ...]) -> list[int]:
        return [int(x) for x in text.split(",") if x.strip()] if text is not None \
            else list(default)

    args.scales = ints(args.scales, (1, 10, 100) if args.quick else MACHINE_SCALES)
    args.requests = ints(args.requests, (1, 10) if args.quick else REQUEST_SCALES)
    args.runs = args.runs or (3 if args.quick else 5)
    args.kinds = args.kinds.split(",") if args.kinds else list(KINDS)
    unknown = set(args.kinds) - set(KINDS)
    if unknown:
        p.error(f"unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.update(sandbox.FAKE_CREDENTIALS)  # the bench's own boto3 client, loopback
    started = time.time()
    load_start = [round(x, 2) for x in os.getloadavg()]  # 1/5/15 min: others share the CPUs
    moto = Moto()
    bench = Bench(args, moto)
    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so the helper and its child are stopped
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    say = lambda s: print(f"[{time.time() - started:6.1f}s] {s}", file=sys.stderr, flush=True)  # noqa: E731
    error = None
    try:
        say(f"moto at {moto.url}, work in {bench.tmp}")
        bench.floors()
        for kind in args.kinds:
            for count in args.requests:
                say(f"{kind}: {count} open requests")
                bench.requests(kind, count)
            for scale in args.scales:
                say(f"{kind}: {scale} machines")
                bench.machines(kind, scale)
    except (BenchError, KeyboardInterrupt) as exc:
        error = f"{type(exc).__name__}: {exc}"
        say(f"stopped: {error}")
    finally:
        moto.stop()
        bench.launcher.close(kill=error is not None)
        shutil.rmtree(bench.tmp, ignore_errors=True)
    rows = [c.summary() for c in bench.cells if c.samples]
    add_ratios(rows)
    goals = targets(rows, bench.scenarios, args.kinds)
    elapsed = time.time() - started
    import boto3
    import moto as moto_pkg

    result = {
        "meta": {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": sys.version.split()[0],
                 "platform": platform.platform(), "cpus": os.cpu_count(),
                 "boto3": boto3.__version__, "moto": moto_pkg.__version__,
                 "root": os.path.abspath(args.root), "elapsed_s": round(elapsed, 1),
                 "load_start": load_start, "load_end": [round(x, 2) for x in os.getloadavg()],
                 "options": {k: v for k, v in vars(args).items() if k != "out"},
                 "error": error},
        "rows": rows, "scenarios": bench.scenarios, "targets": goals,
    }
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    print(table(rows))
    if args.markdown:
        print()
        print(markdown(rows))
    print()
    width = max((len(g["target"]) for g in goals), default=0)
    for g in goals:
        print(f"{g['result']:<5} {g['target']:<{width}}  {g['detail']}")
    print(f"\n{len(rows)} cells in {elapsed:.0f}s; wall = whole process, moto = seconds the "
          f"sandbox spent answering, own = wall - moto, cpu = the child's user+sys, x pass / "
          f"x boto3 = median over the floor's; load average {load_start} at start, "
          f"{result['meta']['load_end']} at end; results in {args.out}")
    failed = error is not None or any(g["result"] == "FAIL" for g in goals)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
