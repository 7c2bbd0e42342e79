"""A sandbox with no AWS account: moto, and the patches that make it behave like EC2.

Used by ``hostfactory-aws sandbox`` and ``demo`` (admin/sandbox_command.py) and by the test
suite (in-process and as moto's server). moto is an optional extra (``pip install
'.[sandbox]'`` from the plugin dir); nothing else imports this module.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing", "AWS_SECURITY_TOKEN": "testing"}
# Services other than EC2 the plugin calls; the config's AWS_ENDPOINT_URL is EC2's alone
# (IBM's meaning), so the sandbox points these at moto with botocore's per-service settings.
OTHER_SERVICES = ("AUTO_SCALING", "SSM", "STS", "IAM")


def endpoint_env(url: str) -> dict[str, str]:
    """Environment sending every non-EC2 service the plugin uses to the sandbox at ``url``."""
    return {f"AWS_ENDPOINT_URL_{name}": url for name in OTHER_SERVICES}


def make_moto_faithful() -> None:
    """Patch moto where it is unlike EC2; idempotent.

    - RunInstances: EC2 launches up to MaxCount when it has the capacity; moto launches
      MinCount. We best-effort with MinCount 1, so without this moto would give one machine.
    - DeleteFleets (TerminateInstances, as instant fleets require): EC2 deletes a fleet whose
      instances are all terminated already; moto fails with "No instances specified".
    """
    from moto.ec2.models.fleets import Fleet
    from moto.ec2.responses.instances import InstanceResponse

    _page_instances_like_ec2()
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
    _merge_source_version()
    _tag_fleet_instances()
    _filter_spot_requests_by_status()
    _add_describe_account_limits()


def _tag_fleet_instances() -> None:
    """EC2 tags what a fleet launches with ``aws:ec2:fleet-id`` (EC2 Fleet) or
    ``aws:ec2spot:fleet-request-id`` (Spot Fleet), and describes a fleet with the ClientToken
    it was created with; moto does neither."""
    from moto.ec2.models.fleets import FleetsBackend
    from moto.ec2.models.spot_requests import SpotFleetRequest, SpotRequestBackend
    from moto.ec2.responses.fleets import Fleets
    from moto.ec2.responses.spot_fleets import SpotFleets

    if getattr(FleetsBackend.create_fleet, "_hf_faithful", False):
        return
    create_fleet, request_spot_fleet = (FleetsBackend.create_fleet,
                                        SpotRequestBackend.request_spot_fleet)

    def remember_token(method: Callable[[Any], Any],
                       token: Callable[[Any], str | None]) -> Callable[[Any], Any]:
        def wrapper(self: Any) -> Any:
            self.ec2_backend.__dict__["_hf_client_token"] = token(self)
            return method(self)
        return wrapper

    Fleets.create_fleet = remember_token(  # type: ignore[method-assign]
        Fleets.create_fleet, lambda r: r._get_param("ClientToken"))
    SpotFleets.request_spot_fleet = remember_token(  # type: ignore[method-assign]
        SpotFleets.request_spot_fleet,
        lambda r: (r._get_param("SpotFleetRequestConfig") or {}).get("ClientToken"))
    config = SpotFleetRequest.spot_fleet_request_config.fget  # type: ignore[attr-defined]
    SpotFleetRequest.spot_fleet_request_config = property(  # type: ignore[method-assign]
        lambda req: {**config(req), **({"ClientToken": req.client_token}
                                       if getattr(req, "client_token", None) else {})})

    def tag(backend: Any, fleet_id: str, key: str, reqs: list[Any]) -> None:
        ids = [_fleet_instance(r).id for r in reqs if _fleet_instance(r) is not None]
        if ids:
            backend.create_tags(ids, {key: fleet_id})

    def fleet(self: Any, *args: Any, **kwargs: Any) -> Any:
        made = create_fleet(self, *args, **kwargs)
        made.client_token = self.__dict__.pop("_hf_client_token", None)
        tag(self, made.id, "aws:ec2:fleet-id", made.spot_requests + made.on_demand_instances)
        return made

    def spot_fleet(self: Any, *args: Any, **kwargs: Any) -> Any:
        made = request_spot_fleet(self, *args, **kwargs)
        made.client_token = self.__dict__.pop("_hf_client_token", None)
        tag(self, made.id, "aws:ec2spot:fleet-request-id", made.spot_requests)
        return made

    fleet._hf_faithful = True  # type: ignore[attr-defined]
    FleetsBackend.create_fleet = fleet  # type: ignore[method-assign]
    SpotRequestBackend.request_spot_fleet = spot_fleet  # type: ignore[method-assign]


def _filter_spot_requests_by_status() -> None:
    """EC2 filters Spot requests by ``status-code`` (wildcards allowed); moto cannot."""
    from moto.ec2.models.spot_requests import SpotInstanceRequest

    original = SpotInstanceRequest.get_filter_value
    if getattr(original, "_hf_faithful", False):
        return

    def get_filter_value(self: Any, filter_name: str, method_name: str | None = None) -> Any:
        if filter_name == "status-code":
            return self.status["Code"]
        return original(self, filter_name, method_name)

    get_filter_value._hf_faithful = True  # type: ignore[attr-defined]
    SpotInstanceRequest.get_filter_value = get_filter_value  # type: ignore[method-assign]


def _merge_source_version() -> None:
    """CreateLaunchTemplateVersion with SourceVersion: EC2 starts from that version's data
    and lays the given fields over it; moto ignores SourceVersion (the new version would
    have no image)."""
    import copy

    from moto.ec2.responses.launch_templates import LaunchTemplates

    original = LaunchTemplates.create_launch_template_version
    if getattr(original, "_hf_faithful", False):
        return

    def create_launch_template_version(self: Any) -> Any:
        source = self._get_param("SourceVersion")
        if source:
            name, tid = self._get_param("LaunchTemplateName"), self._get_param("LaunchTemplateId")
            tmpl = (self.ec2_backend.get_launch_template(tid) if tid else
                    self.ec2_backend.get_launch_template_by_name(name))
            merged = {**copy.deepcopy(tmpl.get_version(source).data),
                      **self._get_param("LaunchTemplateData", {})}
            get = self._get_param
            self._get_param = lambda key, default=None: (
                merged if key == "LaunchTemplateData" else get(key, default))
        return original(self)

    create_launch_template_version._hf_faithful = True  # type: ignore[attr-defined]
    LaunchTemplates.create_launch_template_version = (  # type: ignore[method-assign]
        create_launch_template_version)
    LaunchTemplates.delete_launch_template_versions = (  # type: ignore[attr-defined]
        _delete_launch_template_versions)


def _delete_launch_template_versions(self: Any) -> Any:
    """DeleteLaunchTemplateVersions, which moto lacks: the default version is refused, the
    others go (moto numbers versions by position, so only trailing ones leave the list)."""
    from moto.core.responses import ActionResult

    tid = self._get_param("LaunchTemplateId")
    tmpl = (self.ec2_backend.get_launch_template(tid) if tid else
            self.ec2_backend.get_launch_template_by_name(self._get_param("LaunchTemplateName")))
    done, bad = [], []
    for number in self._get_param("Versions", []):
        row = {"LaunchTemplateId": tmpl.id, "LaunchTemplateName": tmpl.name,
               "VersionNumber": int(number)}
        try:
            version = tmpl.get_version(number)
        except Exception:  # noqa: BLE001 - moto's not-found error
            version = None
        if version is None or getattr(version, "hf_deleted", False):
            bad.append({**row, "ResponseError": {"Code": "launchTemplateVersionDoesNotExist",
                                                 "Message": "version does not exist"}})
        elif tmpl.is_default(version):
            bad.append({**row, "ResponseError": {
                "Code": "launchTemplateVersionIsDefault",
                "Message": "cannot delete the default version"}})
        else:
            version.hf_deleted = True
            done.append(row)
    while len(tmpl.versions) > 1 and getattr(tmpl.versions[-1], "hf_deleted", False):
        tmpl.versions.pop()
    return ActionResult({"SuccessfullyDeletedLaunchTemplateVersions": done,
                         "UnsuccessfullyDeletedLaunchTemplateVersions": bad})


def _page_instances_like_ec2() -> None:
    """DescribeInstances' MaxResults counts instances in EC2 (a reservation may span pages);
    moto counts reservations, so 5,000 machines launched 100 at a time came back in one
    page. Pages of instances keep the call counts (and the reply sizes) EC2's."""
    import copy

    from moto.ec2.responses.instances import ActionResult, InstanceResponse

    if getattr(InstanceResponse.describe_instances, "_hf_faithful", False):
        return
    original = InstanceResponse.describe_instances

    def describe_instances(self: Any) -> Any:
        if "MaxResults" not in self.data or self._get_param("InstanceIds", []):
            return original(self)  # moto's own checks, and one page of everything
        self.error_on_dryrun()
        token = self._get_param("NextToken") or "hf-0"
        if not token.startswith("hf-") or not token[3:].isdigit():
            return original(self)
        start, size = int(token[3:]), int(self._get_param("MaxResults"))
        found = self.ec2_backend.describe_instances(filters=self._filters_from_querystring())
        flat = [(r, i) for r in found for i in r.instances]
        page: list[Any] = []
        for res, inst in flat[start:start + size]:
            if not page or page[-1].id != res.id:
                page.append(copy.copy(res))
                page[-1].instances = []
            page[-1].instances.append(inst)
        more = start + size < len(flat)
        return ActionResult({"Reservations": page,
                             "NextToken": f"hf-{start + size}" if more else None})

    describe_instances._hf_faithful = True  # type: ignore[attr-defined]
    InstanceResponse.describe_instances = describe_instances  # type: ignore[method-assign]


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


# Auto Scaling's default quota of groups per region; the sandbox's backend may set its own
# (``hf_max_groups``), as an account with a raised or lowered quota would have.
ASG_QUOTA = 500


def _add_describe_account_limits() -> None:
    """moto has no Auto Scaling DescribeAccountLimits: answer as AWS does, counting the
    groups moto holds against the quota."""
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.core.responses import ActionResult

    def describe_account_limits(self: Any) -> Any:
        backend = self.autoscaling_backend
        return ActionResult({
            "MaxNumberOfAutoScalingGroups": getattr(backend, "hf_max_groups", ASG_QUOTA),
            "MaxNumberOfLaunchConfigurations": 200,
            "NumberOfAutoScalingGroups": len(backend.autoscaling_groups),
            "NumberOfLaunchConfigurations": len(backend.launch_configurations)})

    AutoScalingResponse.describe_account_limits = describe_account_limits  # type: ignore


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
    """moto's server WSGI app, made faithful to EC2.

    EC2 answers every call from one consistent view; moto's backends are not thread-safe,
    and the threaded server once rendered a DescribeInstances while another thread was
    terminating one of its instances (a TypeError, a 500 EC2 would never send). Calls go
    into moto one at a time, the reply read whole inside the lock.
    """
    from moto.server import DomainDispatcherApplication, create_backend_app

    make_moto_faithful()
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with lock:
            return [b"".join(app(environ, start_response))]

    return one_at_a_time


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
