"""Owning the capacity until it is gone, through the scripts against the sandbox.

Each test is one case of issues 11/12: a restored state file or the plugin's own backup,
a refused clean-up after a launch, an answered request HostFactory has not polled when the
orphan timeout is set, a host that appears after the final answer, a refused settle, a
host with termination protection in a return.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest

import tests.support.hostfactory as _e2e
from tests.e2e.test_apis_lifecycle import EF_REQUEST, Owner, api_templates, launch_templates

HostFactory = _e2e.HostFactory
RI, FLEET_OD = _e2e.RI, _e2e.FLEET_OD
PROVIDER, PROVIDER_TAG = _e2e.PROVIDER, _e2e.PROVIDER_TAG
REQUEST_TAG, TEMPLATE_TAG = _e2e.REQUEST_TAG, _e2e.TEMPLATE_TAG


def _moto_instance(iid: str) -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    return ec2_backends[DEFAULT_ACCOUNT_ID][_e2e.REGION].get_instance(iid)


def age(iid: str, minutes: float) -> None:
    """Time travel: the instance was launched ``minutes`` earlier."""
    inst = _moto_instance(iid)
    inst.launch_time = inst.launch_time - timedelta(minutes=minutes)


def states(hf: HostFactory, ids: list[str]) -> list[str]:
    found = hf.server.instances()
    return [found[i]["State"]["Name"] for i in ids]


def orphans_cli(hf: HostFactory) -> list[dict[str, Any]]:
    """``hostfactory-aws orphans --json`` in HostFactory's environment."""
    proc = subprocess.run([sys.executable, "-c", "import sys; from hostfactory_aws.admin.cli "
                           "import main; sys.exit(main(sys.argv[1:]))", "orphans", "--json"],
                          capture_output=True, text=True, cwd=hf.cwd, timeout=120,
                          env={**hf.env, "PYTHONPATH": str(_e2e.ROOT)})
    rows = json.loads(proc.stdout)["orphans"]
    assert proc.returncode == (1 if rows else 0), proc.stderr  # exit 1: orphans found
    return rows


def test_a_restored_state_or_backup_never_ends_a_held_host(hf: HostFactory) -> None:
    rid = hf.request(RI, 2)
    # The backup requestMachines leaves behind is its reservation: "launching", no
    # instance, written by a process that is gone. Restoring it must not look like a kill.
    reservation = hf.state_path.with_suffix(".json.bak").read_bytes()
    assert json.loads(reservation)["requests"][rid]["launch"] == "launching"
    done = hf.wait(rid)
    ids = sorted(m["machineId"] for m in done["machines"])
    hf.state_path.write_bytes(reservation)  # an admin restores an old copy

    other = hf.request(RI, 1)  # its reaper pass sees the restored record
    again = hf.status(rid, other)[0]
    assert again["status"] == "complete", again
    assert sorted(m["machineId"] for m in again["machines"]) == ids
    hf.ok("getReturnRequests", {"machines": []})
    assert states(hf, ids) == ["running", "running"]

    hf.state_path.write_text("{garbled")  # damaged: the plugin restores its own .bak
    hf.status(other)
    hf.ok("getReturnRequests", {"machines": []})
    assert states(hf, ids) == ["running", "running"]


def test_a_refused_clean_up_after_a_launch_is_retried_never_a_failed_request(
        hf: HostFactory) -> None:
    hf.server.faults.add("DeleteLaunchTemplate", code="UnauthorizedOperation", status=403)
    code, answer = hf.call("requestMachines", {"template": {"templateId": FLEET_OD,
                                                            "machineCount": 2}})
    assert code == 0, answer  # the launch happened: never a failed requestMachines
    rid = answer["requestId"]
    rec = hf.state()["requests"][rid]
    assert rec["launchTemplateId"] and rec["fleetIds"] and len(rec["instances"]) == 2
    assert launch_templates(hf, rid)
    done = hf.wait(rid)

    hf.server.faults.add("DeleteLaunchTemplate", code="UnauthorizedOperation", status=403)
    ret = hf.give_back(done["machines"])
    hf.wait(ret)  # every host gone: cleanup tried, refused again, counted
    cleanup = hf.state()["requests"][rid]["cleanup"]
    assert cleanup["attempts"] == 1 and "UnauthorizedOperation" in cleanup["error"]
    assert launch_templates(hf, rid)

    data = hf.state()  # time travel: the backoff has passed
    data["requests"][rid]["cleanup"]["next"] = 0
    hf.state_path.write_text(json.dumps(data))
    hf.ok("getReturnRequests", {"machines": []})
    assert launch_templates(hf, rid) == []
    rec = hf.state()["requests"][rid]
    assert rec["cleaned"] and rec["endedAt"] and "cleanup" not in rec


def test_orphan_timeout_spares_an_answered_request_never_polled(hf: HostFactory) -> None:
    hf.write_config(AWS_ORPHAN_TIMEOUT_MINUTES=1)
    held = hf.request(RI, 1)
    held_host = hf.wait(held)["machines"]
    unpolled = hf.request(RI, 2)  # HostFactory is down right after it got this id
    ids = sorted(i for i, inst in hf.server.instances().items()
                 if _e2e.tags_of(inst).get(REQUEST_TAG) == unpolled)
    for iid in ids:
        age(iid, 120)
    data = hf.state()  # and the record is two hours old, never polled
    data["requests"][unpolled]["createdAt"] -= 7200
    hf.state_path.write_text(json.dumps(data))

    answer = hf.ok("getReturnRequests", {"machines": [
        {"name": m["name"], "machineId": m["machineId"]} for m in held_host]})
    assert "orphan" not in answer["message"], answer
    assert states(hf, ids) == ["running", "running"]
    assert hf.status(unpolled)[0]["status"] == "complete"


def test_a_host_after_the_final_answer_is_an_orphan_not_held(hf: HostFactory) -> None:
    hf.write_config(AWS_ORPHAN_TIMEOUT_MINUTES=30)
    rid = hf.request(RI, 1)
    done = hf.wait(rid)
    (mine,) = [m["machineId"] for m in done["machines"]]
    # a late host of the request's own launch (its ClientToken is one of the request's
    # batches), after the final answer; a copied host (tags alone) is only ever a candidate:
    # test_reclaim.py::test_a_forged_provider_tag_never_gets_a_host_terminated
    late = hf.server.ec2.run_instances(
        ImageId=hf.image_id, MinCount=1, MaxCount=1, InstanceType="m5.large",
        ClientToken=f"{rid}-9",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": PROVIDER_TAG, "Value": PROVIDER}, {"Key": REQUEST_TAG, "Value": rid},
            {"Key": TEMPLATE_TAG, "Value": RI}]}])["Instances"][0]["InstanceId"]

    assert [m["machineId"] for m in hf.status(rid)[0]["machines"]] == [mine]
    assert hf.templates()[RI]["availableNumber"] == 10 - 1  # the late host is not held
    held = [{"name": m["name"], "machineId": m["machineId"]} for m in done["machines"]]
    answer = hf.ok("getReturnRequests", {"machines": held})
    assert "1 orphan instances" in answer["message"], answer
    (row,) = orphans_cli(hf)
    assert row["instanceId"] == late and row["reason"].startswith("late")

    age(late, 60)  # past the orphan timeout: ended; HostFactory's host is not
    answer = hf.ok("getReturnRequests", {"machines": held})
    assert "1 terminated" in answer["message"], answer
    assert states(hf, [late, mine]) in (["shutting-down", "running"],
                                        ["terminated", "running"])


def test_a_refused_settle_is_retried_by_later_polls_of_other_requests(
        hf: HostFactory) -> None:
    hf.write_templates(api_templates(hf) + hf.default_templates())
    rid = hf.request(EF_REQUEST, 2)
    hf.server.faults.add("DeleteFleets", code="UnauthorizedOperation", status=403)
    assert hf.wait(rid)["status"] == "complete"  # the poll that completes it
    owner = Owner(hf, EF_REQUEST, rid)
    assert owner.state() == "active"  # refused: not counted as settled
    assert hf.state()["requests"][rid]["settle"]["attempts"] == 1

    other = hf.request(RI, 1)
    hf.status(other)  # HostFactory asks about another request only
    assert owner.state() == "deleted_running"
    assert hf.state()["requests"][rid]["settled"] is True


def test_one_protected_host_neither_keeps_the_others_nor_fails_them(hf: HostFactory) -> None:
    rid = hf.request(RI, 3)
    machines = hf.wait(rid)["machines"]
    guarded = machines[1]["machineId"]
    hf.server.ec2.modify_instance_attribute(InstanceId=guarded,
                                            DisableApiTermination={"Value": True})
    ret = hf.give_back(machines)
    answer = hf.wait(ret)
    results = {m["machineId"]: m for m in answer["machines"]}
    assert answer["status"] == "complete_with_error"
    assert results[guarded]["result"] == "fail"
    assert "OperationNotPermitted" in results[guarded]["message"]
    others = [m["machineId"] for m in machines if m["machineId"] != guarded]
    assert all(results[i]["result"] == "succeed" for i in others)
    assert states(hf, others) == ["terminated", "terminated"]
    assert states(hf, [guarded]) == ["running"]


def kill_before_answer(hf: HostFactory, rid: str) -> None:
    """The state a requestMachines killed before it answered leaves: its record still
    launching, its id not in the answer journal, its call lock free (the process is gone)."""
    data = hf.state()
    rec = data["requests"][rid]
    rec.update(launch="launching", answered=False, instances={})
    hf.state_path.write_text(json.dumps(data))
    journal = hf.state_path.with_name(hf.state_path.name + ".answers")
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(x for x in lines if x.strip() != rid))
    locks = hf.state_path.with_name(hf.state_path.name + ".calls")
    (locks / f"{rid}.lock").write_text("")  # left behind, nobody holds it


def test_a_killed_group_launch_is_reaped_with_its_group_and_template(
        hf: HostFactory) -> None:
    hf.write_templates(api_templates(hf) + hf.default_templates())
    rid = hf.request("ASG-One", 2)
    ids = sorted(i for i, inst in hf.server.instances().items()
                 if _e2e.tags_of(inst).get(REQUEST_TAG) == rid)
    assert len(ids) == 2
    kill_before_answer(hf, rid)

    other = hf.request(RI, 1)  # its reaper: HostFactory provably never got rid
    assert states(hf, ids) in (["terminated"] * 2, ["shutting-down"] * 2)
    assert hf.state()["requests"][rid]["launch"] == "abandoned"
    hf.status(other)
    hf.status(other)  # settle (the group launches nothing more), then cleanup
    assert Owner(hf, "ASG-One", rid).state() in ("gone", "Delete in progress")
    assert launch_templates(hf, rid) == []
    live = [i for i, inst in hf.server.instances().items()
            if _e2e.tags_of(inst).get(REQUEST_TAG) == rid
            and inst["State"]["Name"] not in ("terminated", "shutting-down")]
    assert live == []  # nothing refilled what the reaper ended


@pytest.mark.parametrize("tid", ["EF-Request", "SF-Maintain"])
def test_a_killed_fleet_launch_with_no_host_listed_is_found_by_its_tags(
        hf: HostFactory, tid: str) -> None:
    """Killed after CreateFleet/RequestSpotFleet, before the fleet id was written, and no
    host of it listed (none launched yet, or long gone): the reaper finds the fleet by its
    request-id tag, once, and releases it with its template."""
    from tests.support import ec2_events

    hf.write_templates(api_templates(hf) + hf.default_templates())
    rid = hf.request(tid, 2)
    owner = Owner(hf, tid, rid)
    kill_before_answer(hf, rid)
    data = hf.state()
    data["requests"][rid]["fleetIds"] = []  # the kill came before the reply was written
    hf.state_path.write_text(json.dumps(data))
    ids = [i for i, inst in hf.server.instances().items()
           if _e2e.tags_of(inst).get(REQUEST_TAG) == rid]
    hf.server.ec2.terminate_instances(InstanceIds=ids)
    ec2_events.forget_terminated()
    fleet = owner.get()
    assert fleet is not None and owner.state() == "active"
    fid = fleet.get("FleetId") or fleet.get("SpotFleetRequestId")

    other = hf.request(RI, 1)  # its reaper
    assert hf.state()["requests"][rid]["launch"] == "abandoned"
    hf.server.reset_calls()
    hf.status(other)
    hf.status(other)
    calls = hf.server.calls()
    listing = "DescribeFleets" if tid.startswith("EF") else "DescribeSpotFleetRequests"
    assert calls.get(listing) == 1, calls  # one search, not one per poll
    assert owner.state() in RELEASED and owner.state() not in (
        "deleted_running", "cancelled_running"), owner.state()
    assert launch_templates(hf, rid) == []
    assert hf.state()["requests"][rid]["fleetIds"] == [fid]
    hf.server.reset_calls()
    hf.status(other)
    assert listing not in hf.server.calls()


def test_a_lost_work_dir_does_not_overstate_available_number(hf: HostFactory) -> None:
    rid = hf.request(RI, 5)
    hf.wait(rid)
    import shutil

    shutil.rmtree(hf.work_dir)  # state and backup gone, HostFactory still holds 5 hosts
    hf.server.reset_calls()
    assert hf.templates()[RI]["availableNumber"] == 10 - 5
    # the sweep, and (its instant fleets make launch templates) the templates left behind
    assert hf.server.calls() == {"DescribeInstances": 1, "DescribeLaunchTemplates": 1}
    code, answer = hf.call("requestMachines", {"template": {"templateId": RI,
                                                            "machineCount": 6}})
    assert code == 1 and "more than the 5" in answer["message"], answer
    hf.server.reset_calls()
    assert hf.templates()[RI]["availableNumber"] == 5
    assert hf.server.calls() == {}  # the state exists again: free of AWS


@pytest.mark.parametrize("tid", ["ASG-One", "EF-Maintain", "EF-Request", "SF-Request"])
def test_lifecycle_with_the_work_dir_lost_before_every_call(hf: HostFactory, tid: str) -> None:
    import shutil

    hf.write_templates(api_templates(hf) + hf.default_templates())

    def lose() -> None:
        shutil.rmtree(hf.work_dir, ignore_errors=True)

    lose()
    rid = hf.request(tid, 2)
    lose()
    done = hf.wait(rid)
    assert done["status"] == "complete" and len(done["machines"]) == 2, done
    owner = Owner(hf, tid, rid)
    lose()
    assert hf.templates()[tid]["availableNumber"] == 20 - 2
    lose()
    ret = hf.give_back(done["machines"])
    lose()
    assert hf.wait(ret)["status"] == "complete"
    lose()
    hf.ok("getReturnRequests", {"machines": []})  # settled, then released
    lose()
    hf.ok("getReturnRequests", {"machines": []})
    assert owner.state() in ("gone", "Delete in progress", "deleted", "deleted_terminating",
                             "cancelled", "cancelled_terminating"), owner.state()
    assert launch_templates(hf, rid) == []
    live = [i for i, inst in hf.server.instances().items()
            if inst["State"]["Name"] not in ("terminated", "shutting-down")]
    assert live == []


@pytest.mark.parametrize("tid", ["EF-Request", "EF-Maintain", "SF-Request", "ASG-One"])
def test_a_lost_work_dir_releases_what_earlier_requests_left_with_no_host_listed(
        hf: HostFactory, tid: str) -> None:
    """Issue 12: every host of a request returned, its fleet or group not released yet, EC2
    no longer lists the terminated hosts, then the work dir is lost. Only the resources'
    own tags still name the request: the next calls release it all."""
    import shutil

    from tests.support import ec2_events

    hf.write_templates(api_templates(hf) + hf.default_templates())
    rid = hf.request(tid, 2)
    done = hf.wait(rid)  # final answer: a request fleet stops launching, a maintain one
    assert len(done["machines"]) == 2, done  # keeps its target
    owner = Owner(hf, tid, rid)
    hf.give_back(done["machines"])  # the hosts end; the work dir is lost before the poll
    shutil.rmtree(hf.work_dir)
    gone = ec2_events.forget_terminated()
    assert {m["machineId"] for m in done["machines"]} <= set(gone)
    assert launch_templates(hf, rid) != []
    if "Maintain" in tid or tid.startswith("ASG"):  # still there to launch replacements
        assert owner.state() not in RELEASED, owner.state()

    # the first call after the loss rebuilds the request, holding nothing against maxNumber
    assert hf.templates()[tid]["availableNumber"] == 20
    rebuilt = hf.state()["requests"][rid]
    assert rebuilt["rebuilt"] and rebuilt["instances"] == {}, rebuilt
    hf.ok("getReturnRequests", {"machines": []})  # settle, then clean up
    hf.ok("getReturnRequests", {"machines": []})
    assert owner.state() in RELEASED, owner.state()
    assert launch_templates(hf, rid) == []
    assert hf.state()["requests"][rid]["cleaned"] is True
    assert hf.templates()[tid]["availableNumber"] == 20


# A fleet or group that launches nothing more: deleted (or stopped by settle, a request
# fleet then ending by itself with its last host) or gone.
RELEASED = ("gone", "Delete in progress", "deleted", "deleted_terminating", "deleted_running",
            "cancelled", "cancelled_terminating", "cancelled_running")


def test_a_lost_work_dir_deletes_a_launch_template_left_alone(hf: HostFactory) -> None:
    """A request's template outlived its launch (its deletion failed, and so did the
    clean-up's), then the work dir was lost: the template's tags name it, so it goes."""
    import shutil

    hf.write_templates(api_templates(hf) + hf.default_templates())
    rid = "req-00000000-0000-4000-8000-000000000012"
    tags = {PROVIDER_TAG: PROVIDER, REQUEST_TAG: rid, TEMPLATE_TAG: EF_REQUEST}
    ec2 = hf.server.ec2
    ec2.create_launch_template(
        LaunchTemplateName=f"hf-{rid}", LaunchTemplateData={"ImageId": hf.image_id},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [
            {"Key": k, "Value": v} for k, v in tags.items()]}])
    # not ours to delete: another provider's, and an admin's template carrying our tags
    foreign = "req-00000000-0000-4000-8000-000000000013"
    ec2.create_launch_template(
        LaunchTemplateName=f"hf-{foreign}", LaunchTemplateData={"ImageId": hf.image_id},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [
            {"Key": PROVIDER_TAG, "Value": "other"}, {"Key": REQUEST_TAG, "Value": foreign}]}])
    ec2.create_launch_template(
        LaunchTemplateName="admins-own", LaunchTemplateData={"ImageId": hf.image_id},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [
            {"Key": k, "Value": v} for k, v in tags.items()]}])
    shutil.rmtree(hf.work_dir, ignore_errors=True)
    hf.ok("getReturnRequests", {"machines": []})
    names = {lt["LaunchTemplateName"] for lt in ec2.describe_launch_templates()[
        "LaunchTemplates"]}
    assert f"hf-{rid}" not in names
    assert {f"hf-{foreign}", "admins-own"} <= names
