"""gce_provision_state against the local GCE sandbox: what a record covers, that a check only
reads, and that any change to a recorded resource, the run's inputs or the controller's files is
named. Records live in pytest's temporary directories."""

import json
import os
import stat

import pytest
from tests.support.fake_module import load

ps = load("gce_provision_state")
from ansible.module_utils.gce_client import GceClient  # noqa: E402

ZONE = "us-central1-a"
FIREWALL = "allow-ssh"


@pytest.fixture
def client(sandbox, monkeypatch):
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    sandbox.enable_compute()
    return GceClient.from_params({"auth_kind": "accesstoken", "access_token": sandbox.env["GCP_ACCESS_TOKEN"],
                                  "project": sandbox.project}, backoff_base=0.05, poll_interval=0.1)


@pytest.fixture
def project(client):
    """A VM and the firewall rule that admits SSH to it, as a complete run leaves them."""
    client.call("POST", client.global_path("firewalls"), {
        "name": FIREWALL, "network": "global/networks/default", "direction": "INGRESS",
        "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}], "sourceRanges": ["35.235.240.0/20"],
        "targetTags": ["gpu-jupyter"]}, timeout=30)
    client.call("POST", client.zone_path(ZONE, "instances"), {
        "name": "vm", "machineType": f"zones/{ZONE}/machineTypes/n1-standard-4", "tags": {"items": ["gpu-jupyter"]},
        "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
            "sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
        "networkInterfaces": [{"network": "global/networks/default"}]}, timeout=30)
    return client


def params(**over):
    out = dict(inputs="sha256:a:b", controller="c", instance="vm", zone=ZONE, firewalls=[FIREWALL],
               resource_policies=[], service_account="", project_iam=False, buckets=[], router="",
               project_firewalls=False,
               facts={"instance": {"name": "vm", "zone": ZONE}})
    out.update(over)
    return out


def test_a_converged_project_is_read_in_one_step_and_nothing_is_written(sandbox, project, tmp_path):
    path = str(tmp_path / "records" / "p" / "vm.json")
    assert ps.record(project, path, params()) == 3   # the VM, its host keys, the firewall rule
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700

    sandbox.clear_requests()
    differences, facts = ps.check(project, path, "sha256:a:b", "c")
    assert differences == [] and facts == {"instance": {"name": "vm", "zone": ZONE}}
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in sandbox.requests()) == [FIREWALL, "getGuestAttributes", "vm"]
    assert sandbox.requests(mutating=True) == []


def test_a_changed_resource_is_named_and_the_record_dropped(project, tmp_path):
    path = str(tmp_path / "vm.json")
    ps.record(project, path, params())
    # Someone opens the rule to the internet in the console.
    project.call("PATCH", project.global_path("firewalls", FIREWALL), {"sourceRanges": ["0.0.0.0/0"]}, timeout=30)
    differences, facts = ps.check(project, path, "sha256:a:b", "c")
    assert differences == ["firewall rule %s: changed since the last complete run" % FIREWALL] and facts == {}
    assert not os.path.exists(path)
    # No record now: the next run is a full one too, until a complete run records again.
    assert ps.check(project, path, "sha256:a:b", "c")[0] == ["no record of a complete run"]


def test_a_stopped_or_deleted_vm_is_a_difference(project, tmp_path):
    path = str(tmp_path / "vm.json")
    ps.record(project, path, params())
    project.call("POST", project.zone_path(ZONE, "instances", "vm", "stop"), timeout=30)
    # The VM first; a stopped VM's guest attributes may be refused, which is a difference too.
    assert ps.check(project, path, "sha256:a:b", "c")[0][0] == "instance vm: changed since the last complete run"

    ps.record(project, path, params())
    project.call("DELETE", project.zone_path(ZONE, "instances", "vm"), timeout=30)
    assert "instance vm: gone" in ps.check(project, path, "sha256:a:b", "c")[0]


def test_other_inputs_or_controller_files_send_the_role_in_without_reading_anything(sandbox, project, tmp_path):
    path = str(tmp_path / "vm.json")
    ps.record(project, path, params())
    sandbox.clear_requests()
    assert ps.check(project, path, "sha256:a:OTHER", "c")[0] == [
        "the variables or the project's code changed since the last complete run"]
    assert sandbox.requests() == []
    ps.record(project, path, params())
    sandbox.clear_requests()
    assert ps.check(project, path, "sha256:a:b", "edited known_hosts")[0] == [
        "known_hosts or the ssh-config file on this machine changed since the last complete run"]
    assert sandbox.requests() == []


def test_check_mode_keeps_the_record_it_found_different(project, tmp_path):
    path = str(tmp_path / "vm.json")
    ps.record(project, path, params())
    assert ps.check(project, path, "sha256:a:OTHER", "c", check_mode=True)[0]
    assert os.path.exists(path)


def test_a_record_others_may_write_is_not_believed(project, tmp_path):
    path = tmp_path / "vm.json"
    ps.record(project, str(path), params())
    path.chmod(0o666)
    assert ps.check(project, str(path), "sha256:a:b", "c")[0] == ["no record of a complete run"]


def test_a_refused_read_is_a_difference_not_a_failure(sandbox, project, tmp_path):
    path = str(tmp_path / "vm.json")
    ps.record(project, path, params())
    sandbox.add_fault("http_error", status=403, count=1, method="GET", path_regex=r"/firewalls/")
    assert ps.check(project, path, "sha256:a:b", "c")[0] == ["firewall rule %s: error 403" % FIREWALL]


def test_a_link_in_place_of_the_record_is_not_followed(project, tmp_path):
    real = tmp_path / "elsewhere.json"
    ps.record(project, str(real), params())
    link = tmp_path / "vm.json"
    link.symlink_to(real)
    assert ps.check(project, str(link), "sha256:a:b", "c")[0] == ["no record of a complete run"]
    assert json.loads(real.read_text())["inputs"] == "sha256:a:b"   # the target is left alone


def test_with_project_firewalls_a_rule_added_anywhere_is_a_difference(project, tmp_path):
    path = str(tmp_path / "vm.json")
    ps.record(project, path, params(project_firewalls=True))
    project.call("POST", project.global_path("firewalls"), {
        "name": "allow-ssh-anywhere", "network": "global/networks/default", "direction": "INGRESS",
        "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}], "sourceRanges": ["0.0.0.0/0"]}, timeout=30)
    assert ps.check(project, path, "sha256:a:b", "c")[0] == [
        "firewall rules of project %s: changed since the last complete run" % project.project]


def test_every_kind_of_resource_is_read(project):
    wanted = ps.reads(project, params(service_account="vm@p.iam.gserviceaccount.com", project_iam=True,
                                      buckets=["data"], router="us-central1/r",
                                      resource_policies=["https://www.googleapis.com/compute/v1/projects/p/regions/us-central1/resourcePolicies/c"]))
    labels = [w["label"] for w in wanted]
    assert labels == ["instance vm", "host keys of vm", "firewall rule allow-ssh", "placement policy c",
                      "service account vm@p.iam.gserviceaccount.com", "IAM policy of project %s" % project.project,
                      "IAM policy of bucket data", "Cloud NAT router r"]
    # getIamPolicy is the one read that is a POST; nothing else is.
    assert [w["label"] for w in wanted if w["method"] != "GET"] == ["IAM policy of project %s" % project.project]


def test_writing_and_dropping_a_record_never_goes_through_a_planted_link(open_tmp_path):
    """save and forget as an unprivileged user in a temporary tree: a link planted where the record
    goes is replaced or removed, never written or deleted through."""
    from tests.support.unprivileged import run_unprivileged

    tree = open_tmp_path / "records"
    tree.mkdir()
    victim = tree / "victim.json"
    victim.write_text("keep me\n")
    (tree / "vm.json").symlink_to(victim)

    def exercise():
        path = str(tree / "vm.json")
        before = ps.load(path)                      # a link is no record
        ps.save(path, {"format": ps.FORMAT, "inputs": "x"})
        saved = ps.load(path)
        ps.forget(path)
        return before, saved, os.path.lexists(path), victim.read_text()

    before, saved, left, victim_text = run_unprivileged(tree, exercise)
    assert before is None and saved["inputs"] == "x"
    assert not left and victim_text == "keep me\n"
