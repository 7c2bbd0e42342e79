"""Benchmark the five verbs the way HostFactory runs them: one process per call, against moto.

    python bench/run.py             # machines 1,10,100,1000,5000,10000; requests 1,10,100,500
    python bench/run.py --quick     # machines 1,10,100; requests 1,10; 3 runs
    python bench/run.py --scales 1,1000 --requests 10 --kinds RunInstances

This is the runner; what runs (APIs, scales, scenarios) and the targets are the table in
bench/scenarios.py. The sandbox server (moto on 127.0.0.1, in this process) and the
HostFactory installation are tests/support's; each verb runs as
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import scenarios  # noqa: E402
from bench.scenarios import KINDS, BenchError  # noqa: E402
from hostfactory_aws.admin import sandbox  # noqa: E402
from tests.support.hostfactory import HostFactory  # noqa: E402
from tests.support.server import SandboxServer, index_moto_tags  # noqa: E402

PROVIDER = "bench"
BOTO3_FLOOR_CODE = ("import boto3; boto3.client('ec2', region_name='us-east-1', "
                    "endpoint_url={url!r}).describe_instances(MaxResults=5)")


def discover(ec2: Any) -> list[str]:
    """Three /18 subnets of a new VPC (new ids after every reset).

    Not moto's default subnets: they are /20 (4,091 addresses), and where EC2 would
    answer InsufficientFreeAddressesInSubnet (and the plugin move on to the next
    subnet) moto fails with an internal error, so 5,000 machines cannot be launched.
    """
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    return [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{64 * i}.0/18",
                              AvailabilityZone=f"us-east-1{az}")["Subnet"]["SubnetId"]
            for i, az in enumerate("abc")]


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
    """Runs verbs as HostFactory does, each one timed in the launcher helper, into cells.

    The installation (dirs, environment, config, templates) is tests/support's HostFactory
    over the sandbox server; ``--root`` only changes whose scripts/ run.
    """

    def __init__(self, args: argparse.Namespace, moto: SandboxServer) -> None:
        self.args = args
        self.moto = moto
        self.root = os.path.abspath(args.root)
        self.tmp = tempfile.mkdtemp(prefix="hostfactory-aws-bench-")
        # moto needs over a minute to list 5,000 instances on a busy machine (EC2: seconds);
        # the default 60 s read timeout would turn that into retries, and launching 10,000
        # takes moto 110 s, which the default 120 s verb deadline would cut short (the
        # launch then answers what it made). The bench measures the plugin, not the
        # deadline: it gets HostFactory's whole 240 s action timeout, less a margin.
        self.hf = HostFactory(Path(self.tmp), moto, provider=PROVIDER, templates=[], config={
            "AWS_READ_TIMEOUT_MS": 900000, "LogLevel": "INFO", "VERB_DEADLINE_SEC": 230,
            "AWS_REQUEST_RETRY_ATTEMPTS": None})
        self.work = str(self.hf.work_dir)
        self.env = self.hf.env
        self.launcher = Launcher()
        self.cells: list[Cell] = []
        self.scenarios: list[dict[str, Any]] = []
        self._seq = itertools.count()  # set-up calls run on two threads

    # -- running one process ------------------------------------------------------------

    def spawn(self, cmd: list[str], env: dict[str, str] | None = None,
              timed: bool = True) -> Sample:
        """One child process; untimed ones (parallel set-up) skip the helper and counters."""
        n = next(self._seq)
        out, err = os.path.join(self.tmp, f"out-{n}"), os.path.join(self.tmp, f"err-{n}")
        if timed:
            self.moto.reset_calls()
            got = self.launcher.run(cmd, env or self.env, str(self.hf.cwd), out, err)
            moto_s, calls = self.moto.timed.seconds, self.moto.calls()
        else:
            with open(out, "wb") as fo, open(err, "wb") as fe:
                proc = subprocess.run(cmd, env=env or self.env, cwd=self.hf.cwd, stdout=fo,
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

    def floor_pass(self) -> Sample:
        """The floor of any process: ``python -c pass``."""
        return self.spawn([sys.executable, "-c", "pass"])

    def floor_boto3(self) -> Sample:
        """The floor of any AWS call: a one-call boto3 script against the same sandbox."""
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
        template = scenarios.template(kind, self.moto.image_id(), discover(self.moto.ec2))
        self.hf.write_templates([template])
        self.hf.write_config()
        self.clear_work()
        # Steady state: HostFactory polls getAvailableTemplates all the time, so the files'
        # schema check has passed before the calls we time (the first call is timed apart).
        self.verb("getAvailableTemplates", {})
        return template["templateId"]

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

    def state_bytes(self) -> int:
        try:
            return os.path.getsize(self.hf.state_path)
        except OSError:
            return 0

    def request(self, tid: str, count: int, timed: bool = True) -> Sample:
        return self.verb("requestMachines",
                         {"template": {"templateId": tid, "machineCount": count}}, timed=timed)

    def request_untimed(self, tid: str, machines: int, count: int) -> list[str]:
        """``count`` requests for set-up, two processes at a time; their request ids."""
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            return [sample.answer["requestId"] for sample in pool.map(
                lambda _: self.request(tid, machines, False), range(count))]

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

# --------------------------------------------------------------------------- output

def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's median over the floors': ``python -c pass``, and the stock boto3 one-call
    script measured beside it (its own scenario's, else the empty-account one)."""
    find, boto3_floor = scenarios.find, scenarios.FLOOR_BOTO3
    plain = find(rows, verb=scenarios.FLOOR_PASS)
    for r in rows:
        boto = (find(rows, kind=r["kind"], scenario=r["scenario"], verb=boto3_floor)
                or find(rows, scenario="floor", verb=boto3_floor))
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

    args.scales = ints(args.scales, scenarios.QUICK_MACHINE_SCALES if args.quick
                       else scenarios.MACHINE_SCALES)
    args.requests = ints(args.requests, scenarios.QUICK_REQUEST_SCALES if args.quick
                         else scenarios.REQUEST_SCALES)
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
    index_moto_tags()
    # An installed plugin has its bytecode (pip compiles it; README's install step does too);
    # with PYTHONDONTWRITEBYTECODE set, every module edited since would be compiled from
    # source in every timed call (measured: getAvailableTemplates 0.12 s instead of 0.06 s).
    import compileall

    compileall.compile_dir(os.path.join(os.path.abspath(args.root), "hostfactory_aws"), quiet=1)
    moto = SandboxServer()
    bench = Bench(args, moto)
    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so the helper and its child are stopped
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    say = lambda s: print(f"[{time.time() - started:6.1f}s] {s}", file=sys.stderr, flush=True)  # noqa: E731
    error = None
    try:
        say(f"moto at {moto.url}, work in {bench.tmp}")
        for what, scenario in scenarios.plan(args.kinds, args.requests, args.scales):
            say(what)
            scenario(bench)
    except (BenchError, KeyboardInterrupt) as exc:
        error = f"{type(exc).__name__}: {exc}"
        say(f"stopped: {error}")
    finally:
        moto.stop()
        bench.launcher.close(kill=error is not None)
        shutil.rmtree(bench.tmp, ignore_errors=True)
    rows = [c.summary() for c in bench.cells if c.samples]
    add_ratios(rows)
    goals = scenarios.targets(rows, bench.scenarios, args.kinds)
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
