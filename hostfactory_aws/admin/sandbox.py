"""A sandbox with no AWS account: moto in-process, and the patches that make it behave like EC2.

Used by ``hostfactory-aws demo`` and by the test suite (in-process and as moto's server).
moto is an optional extra (``pip install '.[sandbox]'``); nothing else imports this module.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from typing import Any, Callable

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing", "AWS_SECURITY_TOKEN": "testing"}


def make_moto_faithful() -> None:
    """Patch moto where it is unlike EC2; idempotent.

    - RunInstances: EC2 launches up to MaxCount when it has the capacity; moto launches
      MinCount. We best-effort with MinCount 1, so without this moto would give one machine.
    - DeleteFleets (TerminateInstances, as instant fleets require): EC2 deletes a fleet whose
      instances are all terminated already; moto fails with "No instances specified".
    """
    from moto.ec2.models.fleets import Fleet
    from moto.ec2.responses.instances import InstanceResponse

    if not getattr(Fleet.terminate_instances, "_hf_faithful", False):
        fleet_terminate = Fleet.terminate_instances

        def terminate_instances(self: Any) -> None:
            live = [r for r in self.spot_requests + self.on_demand_instances
                    if _fleet_instance(r).state != "terminated"]
            if live:
                fleet_terminate(self)

        terminate_instances._hf_faithful = True  # type: ignore[attr-defined]
        Fleet.terminate_instances = terminate_instances  # type: ignore[method-assign]

    if getattr(InstanceResponse.run_instances, "_hf_faithful", False):
        return
    original = InstanceResponse.run_instances

    def run_instances(self: Any) -> Any:
        params = getattr(self, "params", None)
        if getattr(self, "automated_parameter_parsing", False) and isinstance(params, dict):
            if "MaxCount" in params:
                params["MinCount"] = params["MaxCount"]
        elif "MaxCount" in self.querystring:
            self.querystring["MinCount"] = self.querystring["MaxCount"]
        return original(self)

    run_instances._hf_faithful = True  # type: ignore[attr-defined]
    InstanceResponse.run_instances = _idempotent(run_instances)  # type: ignore[method-assign]
    from moto.ec2.responses.fleets import Fleets

    Fleets.create_fleet = _idempotent(Fleets.create_fleet)  # type: ignore[method-assign]
    _add_modify_fleet()
    _tolerate_empty_spot_fleet_termination()


def _tolerate_empty_spot_fleet_termination() -> None:
    """CancelSpotFleetRequests(TerminateInstances=True) on a request whose instances are all
    gone succeeds in EC2; moto fails it with 'No instances specified'."""
    from moto.ec2.models.spot_requests import SpotFleetRequest

    original = SpotFleetRequest.terminate_instances

    def terminate_instances(self: Any) -> None:
        try:
            original(self)
        except Exception as exc:  # moto's InvalidParameterCombination
            if "No instances specified" not in str(exc):
                raise

    SpotFleetRequest.terminate_instances = terminate_instances  # type: ignore[method-assign]


def _idempotent(method: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """EC2 answers a repeated ClientToken with the first call's result, launching nothing;
    moto launches again. This replays the first answer, per account, region and action.
    The answers live on moto's backend, so a moto reset forgets them with everything else."""

    def wrapper(self: Any) -> Any:
        token = self._get_param("ClientToken")
        if not token:
            return method(self)
        backend = self.ec2_backend
        if "_hf_tokens" not in backend.__dict__:
            backend._hf_tokens = {}
        key = (method.__name__, token)
        if key not in backend._hf_tokens:
            backend._hf_tokens[key] = method(self)
        return backend._hf_tokens[key]

    wrapper.__name__ = method.__name__
    wrapper._hf_faithful = True  # type: ignore[attr-defined]
    return wrapper


def _add_modify_fleet() -> None:
    """moto has no ModifyFleet: give it one that changes the target like EC2 does.

    Only the target changes; like EC2 with ExcessCapacityTerminationPolicy no-termination,
    nothing running is terminated, and (moto has no fleet loop) nothing is replaced.
    """
    from moto.core.responses import ActionResult
    from moto.ec2.responses.fleets import Fleets

    def modify_fleet(self: Any) -> Any:
        fleet_id = self._get_param("FleetId")
        spec = self._get_param("TargetCapacitySpecification", {}) or {}
        fleets = self.ec2_backend.describe_fleets([fleet_id])
        if not fleets:
            from moto.ec2.exceptions import InvalidParameterValueErrorUnknownAttribute

            raise InvalidParameterValueErrorUnknownAttribute(f"fleet {fleet_id}")
        fleet = fleets[0]
        total = int(spec.get("TotalTargetCapacity", fleet.target_capacity))
        fleet.target_capacity = total
        fleet.target_capacity_specification = {**fleet.target_capacity_specification,
                                               **{k: v for k, v in spec.items()},
                                               "TotalTargetCapacity": total}
        return ActionResult({"Return": True})

    Fleets.modify_fleet = modify_fleet  # type: ignore[attr-defined]


def _fleet_instance(req: Any) -> Any:
    """moto keeps a fleet's spot requests as objects and its on-demand ones as dicts."""
    return req["instance"] if isinstance(req, dict) else req.instance


class CallCounter:
    """WSGI middleware around moto's server app: counts AWS calls by action.

    ``GET /_hf/calls`` returns the counts as JSON; ``DELETE /_hf/calls`` resets them.
    The tests wrap it further to inject faults; the benchmark reads the counts.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    def counts(self) -> dict[str, int]:
        """AWS calls received since the last clear, by action (a copy)."""
        with self._lock:
            return dict(self.calls)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/_hf/calls":
            if environ["REQUEST_METHOD"] == "DELETE":
                self.clear()
            body = json.dumps(self.counts()).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        action = request_action(environ)
        if action:
            with self._lock:
                self.calls[action] = self.calls.get(action, 0) + 1
        return self.app(environ, start_response)


def request_action(environ: dict[str, Any]) -> str:
    """The AWS action of a request (query protocol Action=..., or JSON X-Amz-Target).

    Reads the body and puts it back, so the wrapped app still sees it.
    """
    import io
    from urllib.parse import parse_qs

    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rsplit(".", 1)[-1]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    query = parse_qs(environ.get("QUERY_STRING", ""))
    form = parse_qs(body.decode("utf-8", "replace")) if body else {}
    return (form.get("Action") or query.get("Action") or [""])[0]


def moto_app() -> Any:
    """moto's server WSGI app, made faithful to EC2."""
    from moto.server import DomainDispatcherApplication, create_backend_app

    make_moto_faithful()
    return DomainDispatcherApplication(create_backend_app)


def reset_moto(url: str) -> None:
    """A fresh moto behind the sandbox server at ``url`` (moto's own reset endpoint)."""
    import urllib.request

    req = urllib.request.Request(url + "/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        if resp.status != 200:
            raise RuntimeError(f"moto reset at {url} answered {resp.status}")


def serve(app: Any, host: str = "127.0.0.1", port: int = 0) -> tuple[Any, str]:
    """Serve a WSGI app on loopback in a daemon thread; returns (server, endpoint url)."""
    import logging

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log on the console
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the sandbox only listens on loopback")
    server = make_server(host, port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_port}"


def demo_templates(ec2: Any) -> dict[str, Any]:
    """Templates over the sandbox's own default subnets and a moto AMI."""
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:3]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return {"templates": [
        {"templateId": "OnDemand-M5", "maxNumber": 10, "providerApi": "RunInstances",
         "imageId": image, "vmType": "m5.large", "subnetId": subnets,
         "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"],
                        "nram": ["Numeric", "8192"]},
         "instanceTags": "Project=demo;CostCenter=grid"},
        {"templateId": "Spot-Mixed", "maxNumber": 40, "providerApi": "EC2Fleet",
         "fleetType": "instant", "priceType": "spot", "imageId": image,
         "vmTypes": {"m5.large": 1, "m5.xlarge": 2}, "subnetId": subnets,
         "allocationStrategy": "priceCapacityOptimized"},
    ]}


def run_demo(out: Callable[[str], None] = print, progress: Callable[[str], None] | None = None,
             machine_count: int = 2) -> int:
    """The whole HostFactory cycle against moto; each verb's JSON printed as it answers."""
    try:
        from moto import mock_aws
    except ImportError:
        sys.stderr.write("the demo needs moto: pip install 'hostfactory-aws[sandbox]'\n")
        return 2
    say = progress or (lambda s: sys.stderr.write(s + "\n"))
    import boto3

    from hostfactory_aws.invoke_provider import run

    os.environ.update(FAKE_CREDENTIALS)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    make_moto_faithful()
    with tempfile.TemporaryDirectory(prefix="hostfactory-aws-demo-") as tmp, mock_aws():
        conf = os.path.join(tmp, "conf")
        os.makedirs(conf)
        ec2 = boto3.client("ec2", region_name="us-east-1")
        with open(os.path.join(conf, "awsprov_config.json"), "w") as fh:
            json.dump({"AWS_REGION": "us-east-1", "LogLevel": "INFO"}, fh)
        with open(os.path.join(conf, "awsprov_templates.json"), "w") as fh:
            json.dump(demo_templates(ec2), fh)
        env = {**os.environ, "HF_PROVIDER_NAME": "awsdemo", "HF_PROVIDER_CONFDIR": conf,
               "HF_PROVIDER_WORKDIR": os.path.join(tmp, "work"),
               "HF_PROVIDER_LOGDIR": os.path.join(tmp, "log")}

        def call(verb: str, data: dict[str, Any]) -> dict[str, Any]:
            code, answer = run([verb], _Stdin(json.dumps(data)), env)
            out(f"$ {verb}.sh  <<< {json.dumps(data)}")
            out(json.dumps(answer, indent=2))
            if code:
                raise SystemExit(f"demo: {verb} failed: {answer.get('message')}")
            return answer

        say("demo: sandbox EC2 (moto) in us-east-1, provider 'awsdemo', work dir " + tmp)
        call("getAvailableTemplates", {})
        for template in ("OnDemand-M5", "Spot-Mixed"):
            say(f"demo: requesting {machine_count} units of {template}")
            req = call("requestMachines", {"template": {"templateId": template,
                                                        "machineCount": machine_count}})
            status = _poll(call, req["requestId"])
            hosts = [{"name": m["name"], "machineId": m["machineId"]}
                     for m in status["machines"]]
            call("getReturnRequests", {"machines": hosts})
            say(f"demo: returning {len(hosts)} machines of {template}")
            ret = call("requestReturnMachines", {"machines": hosts})
            _poll(call, ret["requestId"])
        call("getAvailableTemplates", {})
        say("demo: done; every verb answered one JSON document")
    return 0


def _poll(call: Callable[[str, dict[str, Any]], dict[str, Any]], rid: str) -> dict[str, Any]:
    for _ in range(10):
        answer = call("getRequestStatus", {"requests": [{"requestId": rid}]})["requests"][0]
        if answer["status"] != "running":
            return answer
    raise SystemExit(f"demo: {rid} still running after 10 polls")


class _Stdin:
    """Just enough of a file for read_input."""

    def __init__(self, text: str) -> None:
        self._text = text

    def isatty(self) -> bool:
        return False

    def read(self) -> str:
        return self._text
