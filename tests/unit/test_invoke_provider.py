"""invoke_provider.py: input reading, one JSON document on stdout whatever happens."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pytest

from hostfactory_aws import invoke_provider
from hostfactory_aws.errors import AwsError, InputError

TEMPLATES = {"templates": [{
    "templateId": "OnDemand-M5", "maxNumber": 4, "imageId": "ami-0123456789abcdef0",
    "vmType": "m5.large",
    "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"],
                   "nram": ["Numeric", "8192"]}}]}
ENV_NAMES = ("HF_PROVIDER_NAME", "HF_PROVIDER_CONFDIR", "HF_PROVIDER_WORKDIR",
             "HF_PROVIDER_LOGDIR", "PROVIDER_NAME", "PRO_CONF_DIR", "PRO_DATA_DIR",
             "PRO_LSF_LOGDIR")


class Stdin(io.StringIO):
    """A pipe, not a terminal."""

    def isatty(self) -> bool:
        return False


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def env(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A Symphony-style environment with a complete conf dir, also set in os.environ."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "awsprov_config.json").write_text(json.dumps({"AWS_REGION": "us-east-1"}))
    (conf / "awsprov_templates.json").write_text(json.dumps(TEMPLATES))
    values = {"HF_PROVIDER_NAME": "awsinst", "HF_PROVIDER_CONFDIR": str(conf),
              "HF_PROVIDER_WORKDIR": str(tmp_path / "work"),
              "HF_PROVIDER_LOGDIR": str(tmp_path / "log")}
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


# --- read_input --------------------------------------------------------------------------

def test_read_input_from_file(tmp_path: Any) -> None:
    f = tmp_path / "hf_in_abc123"
    f.write_text('{"template": {"templateId": "T1", "machineCount": 2}}')
    assert invoke_provider.read_input(["-f", str(f)], Tty()) == {
        "template": {"templateId": "T1", "machineCount": 2}}


def test_read_input_from_stdin() -> None:
    assert invoke_provider.read_input([], Stdin('{"requests": []}')) == {"requests": []}


@pytest.mark.parametrize("text", ["", "  \n"])
def test_empty_input_is_an_empty_object(tmp_path: Any, text: str) -> None:
    assert invoke_provider.read_input([], Stdin(text)) == {}
    f = tmp_path / "in.json"
    f.write_text(text)
    assert invoke_provider.read_input(["-f", str(f)], Stdin("ignored")) == {}


def test_terminal_stdin_is_not_waited_on() -> None:
    assert invoke_provider.read_input([], Tty('{"never": "read"}')) == {}


def test_malformed_json_in_file_names_the_file(tmp_path: Any) -> None:
    f = tmp_path / "hf_in_XYZ"
    f.write_text('{"machines": [')
    with pytest.raises(InputError) as exc:
        invoke_provider.read_input(["-f", str(f)], Tty())
    assert str(f) in str(exc.value)
    assert "not valid JSON" in str(exc.value)


def test_malformed_json_on_stdin_says_standard_input() -> None:
    with pytest.raises(InputError, match="standard input is not valid JSON"):
        invoke_provider.read_input([], Stdin("{nope}"))


@pytest.mark.parametrize("text", ["[1, 2]", '"text"', "42", "null"])
def test_non_object_input_is_rejected(text: str) -> None:
    with pytest.raises(InputError, match="must be a JSON object"):
        invoke_provider.read_input([], Stdin(text))


def test_missing_input_file(tmp_path: Any) -> None:
    missing = str(tmp_path / "gone.json")
    with pytest.raises(InputError) as exc:
        invoke_provider.read_input(["-f", missing], Tty())
    assert missing in str(exc.value)


@pytest.mark.parametrize("args, text", [
    (["-f"], "usage"), (["-f", "a", "b"], "usage"), (["-x"], "unexpected arguments -x"),
    (["input.json"], "unexpected arguments input.json")])
def test_bad_arguments(args: list[str], text: str) -> None:
    with pytest.raises(InputError, match=text):
        invoke_provider.read_input(args, Tty())


# --- run ---------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["bogus"], [], ["getavailabletemplates"]])
def test_unknown_verb(argv: list[str]) -> None:
    code, answer = invoke_provider.run(argv, Stdin("{}"), {})
    assert code == 1
    assert list(answer) == ["message"]
    assert "unknown verb" in answer["message"]
    assert "getAvailableTemplates" in answer["message"]  # the usage lists the verbs


def test_run_get_available_templates(env: dict[str, str]) -> None:
    code, answer = invoke_provider.run(["getAvailableTemplates"], Stdin("{}"), env)
    assert code == 0, answer
    assert [t["templateId"] for t in answer["templates"]] == ["OnDemand-M5"]
    assert answer["templates"][0]["availableNumber"] == 4
    log = os.path.join(env["HF_PROVIDER_LOGDIR"], "awsinst-hostfactory-aws.log")
    with open(log) as fh:
        assert "getAvailableTemplates" in fh.read()


def test_run_config_error_names_the_file(env: dict[str, str]) -> None:
    path = os.path.join(env["HF_PROVIDER_CONFDIR"], "awsprov_config.json")
    with open(path, "w") as fh:
        json.dump({"AWS_REGON": "us-east-1"}, fh)
    code, answer = invoke_provider.run(["getAvailableTemplates"], Stdin("{}"), env)
    assert code == 1
    assert path in answer["message"]
    assert "AWS_REGON" in answer["message"]


def test_run_input_error_is_exit_1(env: dict[str, str]) -> None:
    code, answer = invoke_provider.run(["requestMachines"], Stdin("[]"), env)
    assert (code, list(answer)) == (1, ["message"])
    assert "must be a JSON object" in answer["message"]


def test_throttled_call_says_outcome_unknown(env: dict[str, str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def throttled(verb: str, data: dict[str, Any], ctx: Any) -> dict[str, Any]:
        raise AwsError("RunInstances", "RequestLimitExceeded", "slow down", "throttle")

    monkeypatch.setattr(invoke_provider, "dispatch", throttled)
    code, answer = invoke_provider.run(["requestMachines"], Stdin("{}"), env)
    assert code == 1
    assert "RequestLimitExceeded" in answer["message"]
    assert "outcome unknown" in answer["message"]


# --- main --------------------------------------------------------------------------------

def test_main_prints_one_document_on_success(env: dict[str, str], tmp_path: Any,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "in.json"
    f.write_text("{}")
    assert invoke_provider.main(["getAvailableTemplates", "-f", str(f)]) == 0
    out, _ = capfd.readouterr()
    assert json.loads(out)["templates"][0]["templateId"] == "OnDemand-M5"


def test_main_internal_error_is_still_one_json_document(
        env: dict[str, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    def broken(verb: str, data: dict[str, Any], ctx: Any) -> dict[str, Any]:
        raise KeyError("instances")

    monkeypatch.setattr(invoke_provider, "dispatch", broken)
    f = tmp_path / "in.json"
    f.write_text('{"requests": [{"requestId": "req-1"}]}')
    assert invoke_provider.main(["getRequestStatus", "-f", str(f)]) == 1
    out, _ = capfd.readouterr()
    answer = json.loads(out)  # exactly one JSON document, nothing else
    assert list(answer) == ["message"]
    assert "internal error in getRequestStatus: KeyError" in answer["message"]
    with open(os.path.join(env["HF_PROVIDER_LOGDIR"], "awsinst-hostfactory-aws.log")) as fh:
        assert "Traceback" in fh.read()  # the details went to the log


def test_accidental_print_goes_to_stderr(env: dict[str, str], tmp_path: Any,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    def chatty(verb: str, data: dict[str, Any], ctx: Any) -> dict[str, Any]:
        print("Loading credentials... done")
        return {"message": "ok", "templates": []}

    monkeypatch.setattr(invoke_provider, "dispatch", chatty)
    f = tmp_path / "in.json"
    f.write_text("{}")
    assert invoke_provider.main(["getAvailableTemplates", "-f", str(f)]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out) == {"message": "ok", "templates": []}
    assert "Loading credentials" in err
    assert "Loading credentials" not in out


def test_main_unknown_verb(capfd: pytest.CaptureFixture[str]) -> None:
    assert invoke_provider.main(["frobnicate"]) == 1
    out, _ = capfd.readouterr()
    assert "unknown verb 'frobnicate'" in json.loads(out)["message"]
