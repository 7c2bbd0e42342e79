"""Issue 13: IBM's documented files, unchanged apart from ids, run the whole cycle.

The corpus (tests/data/ibm) is IBM's Symphony config and template examples, LSF's awsv2
sample config and templates, and the verb inputs of IBM's plugin README. Only ids that must
exist in the sandbox (AMI, subnets, security group, key pair, instance profile, file paths)
and the endpoint are replaced. Every template is driven through request, status, return and
status to complete, through the scripts, several templates per call where HostFactory would.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import boto3

from tests.support.hostfactory import PROVIDER, ROOT, HostFactory, tags_of

CORPUS = ROOT / "tests" / "data" / "ibm"
SYMPHONY_TAGS = {"company": "abc", "team": "xyz"}


def corpus(*parts: str) -> Any:
    return json.loads((CORPUS.joinpath(*parts)).read_text())


def client(hf: HostFactory, service: str, region: str) -> Any:
    return boto3.client(service, region_name=region, endpoint_url=hf.server.url,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def sandbox_ids(hf: HostFactory, region: str) -> dict[str, Any]:
    """Objects IBM's examples name, made in the sandbox: key pair, profile, group, AMI."""
    ec2, iam = client(hf, "ec2", region), client(hf, "iam", region)
    ids: dict[str, Any] = {}
    for key in ("Sym-Key", "Lsf-Key"):
        ec2.create_key_pair(KeyName=key)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName="myRole", AssumeRolePolicyDocument=trust)
    ids["profile"] = iam.create_instance_profile(
        InstanceProfileName="myRole")["InstanceProfile"]["Arn"]
    iam.add_role_to_instance_profile(InstanceProfileName="myRole", RoleName="myRole")
    ids["sg"] = ec2.describe_security_groups(
        GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    ids["subnets"] = [s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]][:2]
    ids["image"] = hf.image_id if region == "us-east-1" else ec2.describe_images(
        Owners=["amazon"])["Images"][0]["ImageId"]
    return ids


def localised(t: dict[str, Any], ids: dict[str, Any], script: Path) -> dict[str, Any]:
    """One of IBM's templates with only its ids swapped for the sandbox's."""
    out = dict(t)
    out["imageId"] = ids["image"]
    out["subnetId"] = ids["subnets"] if isinstance(t["subnetId"], list) else ids["subnets"][0]
    if t.get("securityGroupIds") != [""]:  # LSF's [""] (no group) is kept as IBM wrote it
        out["securityGroupIds"] = [ids["sg"]]
    if "instanceProfile" in t:
        out["instanceProfile"] = ids["profile"]
    if "userDataScript" in t:
        out["userDataScript"] = str(script)
    return out


def wait_all(hf: HostFactory, rids: list[str], polls: int = 8) -> dict[str, dict[str, Any]]:
    """getRequestStatus for all of them at once (as HostFactory polls) until none runs."""
    for i in range(polls):
        answers = {r["requestId"]: r for r in hf.status(*rids)}
        if all(a["status"] != "running" for a in answers.values()):
            return answers
        time.sleep(0.2 * (i + 1))
    raise AssertionError(f"still running after {polls} polls: {answers}")


def cycle(hf: HostFactory, requests: dict[str, dict[str, Any]]) -> dict[str, list[dict]]:
    """Request each input, wait, give everything back in one call, wait: all complete."""
    rids = {tid: hf.ok("requestMachines", payload)["requestId"]
            for tid, payload in requests.items()}
    done = wait_all(hf, list(rids.values()))
    machines = {tid: done[rid]["machines"] for tid, rid in rids.items()}
    for tid, rid in rids.items():
        assert done[rid]["status"] == "complete", (tid, done[rid])
        assert machines[tid] and all(m["result"] == "succeed" for m in machines[tid])
    every = [m for ms in machines.values() for m in ms]
    ret = hf.give_back(every)
    assert wait_all(hf, [ret])[ret]["status"] == "complete"
    return machines


def test_symphony_documented_config_and_templates(hf: HostFactory, tmp_path: Path) -> None:
    ids = sandbox_ids(hf, "us-east-1")
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id=testing\naws_secret_access_key=testing\n")
    config = corpus("symphony", "awsprov_config.json")
    assert config["AWS_PROXY_HOST"] == ""  # IBM's "no proxy": kept, it must mean none
    config.update(AWS_ENDPOINT_URL=hf.server.url, AWS_CREDENTIAL_FILE=str(creds),
                  AWS_KEY_FILE=str(tmp_path))
    hf.config_path.write_text(json.dumps(config))
    script = hf.conf_dir / "fresh_install.sh"
    script.write_text("#!/bin/bash\necho symphony >> /tmp/fresh_install.log\n")
    tpls = [localised(t, ids, script) for t in corpus("symphony", "awsprov_templates.json")[
        "templates"]]
    hf.write_templates(tpls)

    answer = hf.ok("getAvailableTemplates", {})
    listed = {t["templateId"]: t for t in answer["templates"]}
    assert list(listed) == [t["templateId"] for t in tpls], answer["message"]
    assert "left out" not in answer["message"]
    assert listed["Template-VM-SYMsmall"]["attributes"]["rank"] == ["Numeric", "0"]

    counts = {"Template-VM-SYMsmall": 2, "SpotTemplate-VM-SYM": 2, "HeteroTemplate-VM-SYM": 2}
    machines = cycle(hf, {tid: {"template": {"templateId": tid, "machineCount": n}}
                          for tid, n in counts.items()})
    found = hf.server.instances()
    for tid, ms in machines.items():
        for m in ms:
            inst = found[m["machineId"]]
            assert tags_of(inst)["hostfactory:templateId"] == tid
            assert SYMPHONY_TAGS.items() <= tags_of(inst).items()
            assert inst["KeyName"] == "Sym-Key"
            assert found[m["machineId"]]["State"]["Name"] in ("running", "shutting-down",
                                                             "terminated")
    # IBM's rule for the API: spot with a fleetRole is a Spot Fleet request; heterogeneous
    # is Spot first with On-Demand for the rest (an instant EC2 Fleet, never silently all-Spot)
    apis = {r["templateId"]: (r["api"], r.get("fleetType"))
            for r in hf.state()["requests"].values() if r["kind"] == "create"}
    assert apis == {"Template-VM-SYMsmall": ("RunInstances", None),
                    "SpotTemplate-VM-SYM": ("SpotFleet", "request"),
                    "HeteroTemplate-VM-SYM": ("EC2Fleet", "instant")}
    assert {m["priceType"] for m in machines["SpotTemplate-VM-SYM"]} == {"spot"}
    assert {m["priceType"] for m in machines["Template-VM-SYMsmall"]} == {"ondemand"}
    after = hf.server.instances()
    assert {after[m["machineId"]]["State"]["Name"] for ms in machines.values()
            for m in ms} == {"terminated"}
    assert all(t["availableNumber"] == t["maxNumber"] for t in hf.templates().values())


def lsf_env(hf: HostFactory) -> None:
    """Turn the installation into LSF's: PRO_* variables, SCRIPT_OPTIONS, no HF_*."""
    for key in [k for k in hf.env if k.startswith("HF_PROVIDER_")]:
        del hf.env[key]
    hf.env.update(PROVIDER_NAME=PROVIDER, PRO_CONF_DIR=str(hf.conf_dir.parent),
                  PRO_DATA_DIR=str(hf.work_dir), PRO_LSF_LOGDIR=str(hf.log_dir),
                  SCRIPT_OPTIONS="clusterName=cluster1")


def boot_script(ec2: Any, iid: str) -> str:
    attr = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
    return base64.b64decode(attr["UserData"]["Value"]).decode()


def test_lsf_sample_config_templates_and_readme_inputs(hf: HostFactory,
                                                       tmp_path: Path) -> None:
    lsf_env(hf)
    config = corpus("lsf", "awsprov_config.json")
    region = config["AWS_REGION"]  # us-west-2, as IBM's sample has it
    ids = sandbox_ids(hf, region)
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id=testing\naws_secret_access_key=testing\n")
    config.update(AWS_CREDENTIAL_FILE=str(creds), AWS_ENDPOINT_URL=hf.server.url)
    hf.config_path.write_text(json.dumps(config))
    sample = [localised(t, ids, Path()) for t in corpus("lsf", "awsprov_templates.json")[
        "templates"]]
    hf.write_templates(sample)

    # maxNumber 0, as IBM ships it: listed, nothing available, a request is refused
    listed = hf.templates()
    assert {t: (v["maxNumber"], v["availableNumber"]) for t, v in listed.items()} == {
        "Template-VM-1": (0, 0), "Template-VM-2": (0, 0)}
    assert listed["Template-VM-1"]["attributes"]["awshost"] == ["Boolean", "1"]
    readme_request = corpus("readme", "requestMachines.json")
    code, refused = hf.call("requestMachines", readme_request)
    assert code == 1 and "maxNumber 0" in refused["message"], refused

    # the admin's one edit: allow machines; plus LSF's ec2FleetConfig key on a third one
    fleet_file = hf.conf_dir / "ec2-fleet-config.json"
    fleet_file.write_text((CORPUS / "lsf" / "ec2-fleet-config.json").read_text())
    fleet_tpl = {**sample[1], "templateId": "Template-Fleet", "maxNumber": 4,
                 "ec2FleetConfig": "ec2-fleet-config.json", "onDemandTargetCapacityRatio": 0.5,
                 "vmType": "t2.micro,t3.micro"}
    hf.write_templates([{**t, "maxNumber": 2} for t in sample] + [fleet_tpl])
    requests = {"Template-VM-1": readme_request,
                "Template-VM-2": {"template": {"templateId": "Template-VM-2",
                                               "machineCount": 1},
                                  "rc_account": "proj1", "userData": {"jobId": "42"}},
                "Template-Fleet": {"template": {"templateId": "Template-Fleet",
                                                "machineCount": 2}}}
    ec2 = client(hf, "ec2", region)
    machines = cycle(hf, requests)

    expect = {"Template-VM-1": ("default", "us_west_2a"), "Template-VM-2": ("proj1",
                                                                            "us_west_2b"),
              "Template-Fleet": ("default", "us_west_2b")}
    for tid, ms in machines.items():
        account, zone = expect[tid]
        for m in ms:
            assert m["rcAccount"] == account
            inst = ec2.describe_instances(InstanceIds=[m["machineId"]])[
                "Reservations"][0]["Instances"][0]
            assert tags_of(inst)["RC_ACCOUNT"] == account
            script = boot_script(ec2, m["machineId"])
            assert "%EXPORT_USER_DATA%" not in script
            exports = [line for line in script.splitlines() if line.startswith("export ")]
            assert exports[:1] == [f"export zone='{zone}'"]
            assert {f"export rc_account='{account}'", f"export template_id='{tid}'",
                    "export clustername='cluster1'",
                    f"export providerName='{PROVIDER}'"} <= set(exports)
            volumes = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id",
                                                     "Values": [m["machineId"]]}])["Volumes"]
            for vol in volumes:
                assert tags_of(vol)["RC_ACCOUNT"] == account
    assert "export jobId='42'" in boot_script(ec2, machines["Template-VM-2"][0]["machineId"])
    fleet = [f for f in ec2.describe_fleets()["Fleets"]
             if tags_of(f).get("hostfactory:templateId") == "Template-Fleet"][0]
    assert fleet["TargetCapacitySpecification"]["TotalTargetCapacity"] == 2
    assert fleet["TargetCapacitySpecification"]["OnDemandTargetCapacity"] == 1

    # IBM's README getReturnRequests input, ids replaced: the machines we terminated
    # ourselves are not reported as reclaimed by AWS
    readme = corpus("readme", "getReturnRequests.json")["machines"]
    held = [{**readme[i], "machineId": m["machineId"], "name": m["name"]}
            for i, m in enumerate(machines["Template-VM-2"] + machines["Template-VM-1"])]
    assert hf.ok("getReturnRequests", {"machines": held})["requests"] == []
