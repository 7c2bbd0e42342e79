"""The lean botocore start-up: models cut from the installed botocore, never drifting from it.

The cutting is pure and tested on small models; the copy made from the installed botocore
is checked against botocore's own full models (same operations, same shapes, same
endpoints), offline: no request leaves the process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from hostfactory_aws.cloud import service_models, session
from hostfactory_aws.errors import AwsError

CONFIG = {"AWS_REGION": "us-east-1", "AWS_CONNECTION_TIMEOUT_MS": 1000,
          "AWS_READ_TIMEOUT_MS": 1000, "AWS_REQUEST_RETRY_ATTEMPTS": 1}
SMALL = {
    "version": "2.0", "documentation": "a long text",
    "metadata": {"endpointPrefix": "x", "protocol": "ec2"},
    "operations": {
        "Keep": {"name": "Keep", "input": {"shape": "KeepIn"}, "output": {"shape": "KeepOut"},
                 "documentation": "prose"},
        "Drop": {"name": "Drop", "input": {"shape": "DropIn"}},
    },
    "shapes": {
        "KeepIn": {"type": "structure", "documentation": "prose",
                   "members": {"Ids": {"shape": "IdList", "documentation": "prose"}}},
        "IdList": {"type": "list", "member": {"shape": "Id", "locationName": "item"}},
        "Id": {"type": "string"},
        "KeepOut": {"type": "structure", "members": {"Tags": {"shape": "TagMap"}}},
        "TagMap": {"type": "map", "key": {"shape": "Id"}, "value": {"shape": "Nested"}},
        "Nested": {"type": "structure", "members": {"Self": {"shape": "Nested"}}},
        "DropIn": {"type": "structure", "members": {"Only": {"shape": "DropOnly"}}},
        "DropOnly": {"type": "string"},
    },
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_DATA_PATH", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


@pytest.fixture(scope="module")
def lean_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return service_models.ensure(str(tmp_path_factory.mktemp("work")))


def _full_model(service: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def _shape_tree(shape: Any, seen: frozenset[str] = frozenset(),
                cut: dict[str, frozenset[str]] | None = None) -> Any:
    """A shape as nested plain data (members by name, down to scalar types); structures
    named in ``cut`` keep only those members (what the lean copy's output shapes do)."""
    if shape.name in seen:
        return shape.name
    seen = seen | {shape.name}
    if shape.type_name == "structure":
        keep = (cut or {}).get(shape.name)
        return {n: _shape_tree(m, seen, cut) for n, m in shape.members.items()
                if keep is None or n in keep}
    if shape.type_name == "list":
        return [_shape_tree(shape.member, seen, cut)]
    if shape.type_name == "map":
        return {"<key>": _shape_tree(shape.key, seen, cut),
                "<value>": _shape_tree(shape.value, seen, cut)}
    return shape.type_name


def test_cut_keeps_the_operations_and_every_shape_they_reach_without_prose() -> None:
    out = service_models.cut_service(SMALL, frozenset({"Keep"}))

    assert list(out["operations"]) == ["Keep"]
    assert set(out["shapes"]) == {"KeepIn", "IdList", "Id", "KeepOut", "TagMap", "Nested"}
    assert "documentation" not in json.dumps(out)
    assert out["metadata"] == SMALL["metadata"] and out["version"] == "2.0"
    assert out["shapes"]["IdList"]["member"]["locationName"] == "item"


def test_cut_paginators_waiters_and_endpoints_to_what_is_called() -> None:
    pages = {"pagination": {"Keep": {"input_token": "NextToken"}, "Drop": {}}}
    waits = {"version": 2, "waiters": {"Up": {"operation": "Keep"}, "Gone": {"operation": "Drop"}}}
    ends = {"version": 3, "partitions": [{"partition": "aws", "regions": {"r": {}},
                                          "services": {"x": {"a": 1}, "other": {}}}]}
    ops = frozenset({"Keep"})

    assert service_models.cut("paginators-1", pages, ops)["pagination"] == {
        "Keep": {"input_token": "NextToken"}}
    assert list(service_models.cut("waiters-2", waits, ops)["waiters"]) == ["Up"]
    cut = service_models.cut_endpoints(ends, {"x"})
    assert cut["partitions"][0]["services"] == {"x": {"a": 1}}
    assert cut["partitions"][0]["regions"] == {"r": {}}


def test_lean_copy_is_botocore_own_model_for_every_operation_called(lean_root: str) -> None:
    import botocore.session

    lean = botocore.session.get_session()
    lean.register_component("data_loader", service_models.lean_loader(lean_root))
    for service, ops in service_models.OPERATIONS.items():
        full, cut = _full_model(service), lean.get_service_model(service)
        assert set(cut.operation_names) == ops
        assert cut.api_version == full.api_version
        for op in sorted(ops):
            a, b = full.operation_model(op), cut.operation_model(op)
            x, y = a.input_shape, b.input_shape  # inputs whole
            assert (x and _shape_tree(x)) == (y and _shape_tree(y)), (service, op, "input")
            x, y = a.output_shape, b.output_shape  # outputs as cut, nothing else missing
            members = service_models.OUTPUT_MEMBERS.get(service)
            assert (x and _shape_tree(x, cut=members)) == (y and _shape_tree(y)), (service, op)
            assert a.http == b.http and a.metadata == b.metadata


def test_copy_is_keyed_by_botocore_version_and_operations(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    import botocore

    first = service_models.ensure(str(tmp_path))
    assert botocore.__version__ in os.path.basename(first)
    monkeypatch.setattr(service_models, "build", lambda *a: pytest.fail("rebuilt"))
    assert service_models.ensure(str(tmp_path)) == first  # made once, then reused
    monkeypatch.undo()

    fewer = {"sts": frozenset({"GetCallerIdentity"})}
    other = service_models.ensure(str(tmp_path), fewer)
    assert other != first
    assert os.listdir(tmp_path) == [os.path.basename(other)]  # the old copy is gone


def test_lean_client_resolves_endpoints_as_botocore_does(lean_root: str) -> None:
    import botocore.session

    full, lean = botocore.session.get_session(), botocore.session.get_session()
    lean.register_component("data_loader", service_models.lean_loader(lean_root))
    for region in ("us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1"):
        for service in ("ec2", "autoscaling", "sts", "iam", "ssm"):
            a = lean.create_client(service, region_name=region)
            b = full.create_client(service, region_name=region)
            assert a.meta.endpoint_url == b.meta.endpoint_url, (region, service)


def test_aws_clients_are_lean_with_botocore_standard_retries(lean_root: str) -> None:
    client = session.Aws(CONFIG, cache_dir=os.path.dirname(lean_root)).client("ec2")

    assert set(client.meta.service_model.operation_names) == service_models.OPERATIONS["ec2"]
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 2}
    assert client.meta.region_name == "us-east-1"


def test_an_operation_left_out_fails_loudly_before_any_request(lean_root: str) -> None:
    aws = session.Aws(CONFIG, cache_dir=os.path.dirname(lean_root))

    with pytest.raises(AwsError) as err:
        aws.call("ec2", "DescribeVpcs")

    assert err.value.code == "OperationNotModelled" and err.value.kind == "fatal"
    assert "service_models.OPERATIONS" in str(err.value)


def test_full_models_when_the_copy_cannot_be_made(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    aws = session.Aws(CONFIG, cache_dir=str(blocked / "work"))

    ops = aws.client("ec2").meta.service_model.operation_names
    assert "DescribeVpcs" in ops  # botocore's whole model: slower, never broken


def test_admin_models_on_aws_data_path_are_left_in_charge(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path / "models"))
    aws = session.Aws(CONFIG, cache_dir=str(tmp_path / "work"))

    assert "DescribeVpcs" in aws.client("ec2").meta.service_model.operation_names
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("value", ["2026-12-01T03:34:23.000Z", "2026-12-01T03:34:23Z",
                                   "2026-12-01T03:34:23.123456+02:00", "2026-12-01T03:34:23",
                                   "Mon, 01 Dec 2026 03:34:23 GMT", 1700000000, "1700000000"])
def test_timestamps_parse_as_botocore_parses_them(value: Any) -> None:
    from botocore.utils import parse_timestamp

    assert session.parse_timestamp(value) == parse_timestamp(value)


def test_clients_parse_timestamps_without_dateutil(lean_root: str) -> None:
    client = session.Aws(CONFIG, cache_dir=os.path.dirname(lean_root)).client("ec2")
    parser = client._endpoint._response_parser_factory.create_parser("ec2")

    assert parser._timestamp_parser is session.parse_timestamp


# Instance members the package names only as RunInstances / launch template input, or from
# other shapes (images, key pairs, groups, subnets), never read from an instance.
NOT_READ_FROM_INSTANCES = {"BlockDeviceMappings", "EbsOptimized", "IamInstanceProfile",
                           "ImageId", "KeyName", "NetworkInterfaces", "RootDeviceName",
                           "SecurityGroups", "VpcId"}


def test_every_instance_member_the_package_names_is_parsed() -> None:
    """A member cut from the lean Instance shape reads as absent: any Instance member named
    anywhere in the package must be kept, or be listed above as never read from one."""
    import ast
    from pathlib import Path

    import hostfactory_aws

    instance = _full_model("ec2").shape_for("Instance")
    named = set()
    for path in Path(hostfactory_aws.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in instance.members:
                named.add(node.value)
    kept = service_models.OUTPUT_MEMBERS["ec2"]["Instance"]
    assert named - kept - NOT_READ_FROM_INSTANCES == set()
    assert kept <= set(instance.members)  # botocore still has every member we parse


def test_a_shape_an_input_reaches_is_never_cut() -> None:
    model = {"operations": {"Get": {"input": {"shape": "In"}, "output": {"shape": "Out"}}},
             "shapes": {"In": {"type": "structure", "members": {"S": {"shape": "Both"}}},
                        "Out": {"type": "structure", "members": {"S": {"shape": "Both"},
                                                                 "O": {"shape": "Only"}}},
                        "Both": {"type": "structure", "members": {"a": {"shape": "Str"},
                                                                  "b": {"shape": "Str"}}},
                        "Only": {"type": "structure", "members": {"a": {"shape": "Str"},
                                                                  "b": {"shape": "Str"}}},
                        "Str": {"type": "string"}}}
    cut = service_models.cut_service(model, frozenset({"Get"}),
                                     {"Both": frozenset({"a"}), "Only": frozenset({"a"})})
    assert list(cut["shapes"]["Both"]["members"]) == ["a", "b"]
    assert list(cut["shapes"]["Only"]["members"]) == ["a"]
