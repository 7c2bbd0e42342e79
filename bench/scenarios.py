"""The benchmark's table: which provisioning APIs, which scales, what each scenario runs, and
the targets the results must meet. The runner (bench/run.py) owns processes and timing.

Adding an API to the benchmark is adding a line to KINDS; adding a scenario is a function
here taking the runner's Bench, and a line in ``plan``.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from bench.run import Bench, Sample

# One entry per provisioning API: the template fields that select it.
KINDS: dict[str, dict[str, Any]] = {
    "RunInstances": {"providerApi": "RunInstances", "vmType": "m5.large"},
    "EC2Fleet": {"providerApi": "EC2Fleet", "fleetType": "instant",
                 "vmTypes": {"m5.large": 1}},
}
MACHINE_SCALES = (1, 10, 100, 1000, 5000, 10000)
REQUEST_SCALES = (1, 10, 100, 500)
QUICK_MACHINE_SCALES = (1, 10, 100)
QUICK_REQUEST_SCALES = (1, 10)
MACHINES_PER_REQUEST = 2          # "a few machines each" in the open-requests scenarios
RUN_INSTANCES_BATCH = 100         # hostfactory_aws.cloud.apis.run_instances.BATCH
DESCRIBE_PAGE = 1000              # hostfactory_aws.cloud.instances.PAGE
ACTION_TIMEOUT = 240              # HF_PROVIDER_ACTION_TIMEOUT in published configs
# issue 15: against the stock boto3 floor, our own seconds and peak RSS at 5,000 machines
FLOOR_RATIO = 0.75
BIG, BIG_OWN_S, BIG_RSS_MB = 5000, 5.0, 150
ATTRIBUTES = {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"],
              "ncores": ["Numeric", "1"], "nram": ["Numeric", "8192"]}
FLOOR_PASS = "python -c pass"
FLOOR_BOTO3 = "boto3 one call"


class BenchError(Exception):
    """A scenario could not go on (a verb failed, or answered something impossible)."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise BenchError(what)


def machines_of(answer: dict[str, Any], rid: str) -> list[dict[str, str]]:
    for req in answer["requests"]:
        if req["requestId"] == rid:
            return [{"name": m["name"], "machineId": m["machineId"]} for m in req["machines"]]
    raise BenchError(f"{rid} missing from getRequestStatus answer")


def template(kind: str, image: str, subnets: list[str]) -> dict[str, Any]:
    """The one template of a scenario: ``kind``'s API, no size limit, complete attributes."""
    return {"templateId": f"bench-{kind}", "maxNumber": -1, "imageId": image,
            "subnetId": subnets, "attributes": ATTRIBUTES, "instanceTags": "Project=bench",
            **KINDS[kind]}


# --------------------------------------------------------------------------- scenarios

def plan(kinds: list[str], request_scales: list[int],
         machine_scales: list[int]) -> list[tuple[str, Callable[[Bench], None]]]:
    """(what to say, scenario) in the order they run."""
    steps: list[tuple[str, Callable[[Bench], None]]] = [("floors", floors)]
    for kind in kinds:
        steps += [(f"{kind}: {count} open requests",
                   functools.partial(requests, kind=kind, count=count))
                  for count in request_scales]
        steps += [(f"{kind}: {scale} machines",
                   functools.partial(machines, kind=kind, scale=scale))
                  for scale in machine_scales]
    return steps


def floors(bench: Bench) -> None:
    """Floors and getAvailableTemplates, interleaved so load hits them alike."""
    kind = next(iter(bench.args.kinds))
    bench.fresh(kind)
    first = bench.cell("-", "first call", 0, "getAvailableTemplates",
                       note="files new to the work dir: full schema check")

    def first_call() -> Sample:
        bench.clear_work()
        return bench.verb("getAvailableTemplates", {})

    bench.repeat([first], [first_call])
    imports = bench.imported_by("getAvailableTemplates", {})
    cells = [bench.cell("-", "floor", 0, FLOOR_PASS),
             bench.cell("-", "floor", 0, FLOOR_BOTO3, note="empty account"),
             bench.cell("-", "steady", 0, "getAvailableTemplates")]
    bench.repeat(cells, [bench.floor_pass, bench.floor_boto3,
                         lambda: bench.verb("getAvailableTemplates", {})],
                 runs=max(bench.args.runs, 5))
    bench.scenarios.append({"kind": "-", "scenario": "floor", "scale": 0,
                            "getAvailableTemplates_imports": imports})


def machines(bench: Bench, kind: str, scale: int) -> None:
    """requestMachines for `scale` machines, then every verb over them."""
    name = f"machines={scale}"
    fl = bench.cell(kind, name, scale, FLOOR_BOTO3, note="before each requestMachines")
    rm = bench.cell(kind, name, scale, "requestMachines", note="fresh account each run")
    gs = bench.cell(kind, name, scale, "getRequestStatus")
    ga = bench.cell(kind, name, scale, "getAvailableTemplates")
    gr = bench.cell(kind, name, scale, "getReturnRequests")
    rr = bench.cell(kind, name, scale, "requestReturnMachines", note="returns all machines")
    gd = bench.cell(kind, name, scale, "getRequestStatus (return)")
    state_size = 0
    for cycle in range(bench.args.runs):
        if cycle and sum(rm.walls()) >= bench.args.budget:
            break
        tid = bench.fresh(kind)
        fl.samples.append(bench.floor_boto3())
        sample = bench.request(tid, scale)
        rm.samples.append(sample)
        rid = sample.answer["requestId"]
        status_in = {"requests": [{"requestId": rid}]}
        if cycle == 0:
            bench.repeat([gs], [lambda d=status_in: bench.verb("getRequestStatus", d)])
            state_size = bench.state_bytes()
            bench.repeat([ga], [lambda: bench.verb("getAvailableTemplates", {})])
            hosts = machines_of(gs.samples[-1].answer, rid)
            check(len(hosts) == scale, f"{kind}: asked {scale}, status lists {len(hosts)}")
            held = {"machines": hosts}
            bench.repeat([gr], [lambda d=held: bench.verb("getReturnRequests", d)])
        elif sum(rr.walls()) < bench.args.budget:
            hosts = machines_of(bench.verb("getRequestStatus", status_in).answer, rid)
        else:
            continue
        ret = bench.verb("requestReturnMachines", {"machines": hosts})
        rr.samples.append(ret)
        gd.samples.append(bench.verb("getRequestStatus", {"requests": [
            {"requestId": ret.answer["requestId"]}]}))
    bench.scenarios.append({"kind": kind, "scenario": name, "scale": scale,
                            "state_bytes": state_size})


def requests(bench: Bench, kind: str, count: int) -> None:
    """`count` open requests of a few machines each, polled together."""
    name = f"requests={count}"
    tid = bench.fresh(kind)
    timed = min(count, bench.args.runs)
    ids = bench.request_untimed(tid, MACHINES_PER_REQUEST, count - timed)
    rm = bench.cell(kind, name, count, "requestMachines",
                    note=f"{MACHINES_PER_REQUEST} machines, with {count - timed}+ open requests")
    for _ in range(timed):
        sample = bench.request(tid, MACHINES_PER_REQUEST)
        rm.samples.append(sample)
        ids.append(sample.answer["requestId"])
    status_in = {"requests": [{"requestId": r} for r in ids]}
    gs = bench.cell(kind, name, count, "getRequestStatus")
    fl = bench.cell(kind, name, count, FLOOR_BOTO3, note="same account state")
    bench.repeat([fl, gs], [bench.floor_boto3,
                            lambda: bench.verb("getRequestStatus", status_in)])
    answer = gs.samples[-1].answer
    hosts = [h for r in ids for h in machines_of(answer, r)]
    check(len(hosts) == count * MACHINES_PER_REQUEST,
          f"{kind}: {count} requests list {len(hosts)} machines")
    ga = bench.cell(kind, name, count, "getAvailableTemplates")
    bench.repeat([ga], [lambda: bench.verb("getAvailableTemplates", {})])
    gr = bench.cell(kind, name, count, "getReturnRequests")
    bench.repeat([gr], [lambda: bench.verb("getReturnRequests", {"machines": hosts})])
    bench.scenarios.append({"kind": kind, "scenario": name, "scale": count,
                            "machines": len(hosts), "state_bytes": bench.state_bytes()})


# --------------------------------------------------------------------------- targets

def find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def targets(rows: list[dict[str, Any]], scenarios: list[dict[str, Any]],
            kinds: list[str]) -> list[dict[str, Any]]:
    """Issues 6 and 15's targets as PASS / FAIL / n/a, each with the figures behind it."""
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
