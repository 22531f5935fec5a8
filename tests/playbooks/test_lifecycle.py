"""Lifecycle playbooks (reconfigure, stop, start, status, destroy) against the local GCE sandbox."""

import re
import sys
import time

import pytest
import yaml

from conftest import flat, REPO, run_playbook

sys.path.insert(0, str(REPO / "plugins" / "module_utils"))
import gce_pricing

ZONE = "us-central1-a"
NAME = "jupyter-gpu"
# ~$1,089/month: reconfigure checks the budget too, so the tests that apply it raise it.
UPGRADE = {"gce_vm_machine_type": "n1-standard-16", "gce_vm_gpu_count": 2, "gce_vm_disk_size_gb": 200,
           "gce_budget_monthly_usd": 1500}
PRICES = yaml.safe_load((REPO / "roles" / "gce_preflight" / "files" / "prices.yml").read_text())


def api_path(link):
    """'https://www.googleapis.com/compute/v1/projects/…' -> '/compute/v1/projects/…'."""
    return "/compute/" + link.split("/compute/", 1)[1] if "://" in link else link


def instance(sandbox, name=NAME, zone=ZONE):
    return sandbox.api("GET", f"/compute/v1/projects/{sandbox.project}/zones/{zone}/instances/{name}")


def exists(sandbox, path):
    try:
        sandbox.api("GET", path)
    except Exception as exc:  # the sandbox client raises on 404
        if "404" in str(exc) or "notFound" in str(exc) or "not found" in str(exc).lower():
            return False
        raise
    return True


def mutating(sandbox):
    """'METHOD last-path-segment' of every mutating request the sandbox logged, in order."""
    calls = []
    for req in sandbox.requests(mutating=True):
        path = req.get("path") or req.get("url") or ""
        calls.append("%s %s" % (req.get("method"), path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]))
    return calls


def wait_status(sandbox, name, zone, status, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if instance(sandbox, name, zone)["status"] == status:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} not {status}: {instance(sandbox, name, zone)['status']}")


def create_vm(sandbox, name, zone, labels):
    """A small extra VM made directly through the API (as another tool or person would)."""
    body = {
        "name": name,
        "machineType": f"zones/{zone}/machineTypes/e2-small",
        "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
            "sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
        "networkInterfaces": [{"network": "global/networks/default"}],
    }
    if labels:
        body["labels"] = labels
    wait_operation(sandbox, sandbox.api("POST", f"/compute/v1/projects/{sandbox.project}/zones/{zone}/instances", body))
    wait_status(sandbox, name, zone, "RUNNING")


def wait_operation(sandbox, op):
    deadline = time.monotonic() + 30
    while op.get("status") != "DONE" and time.monotonic() < deadline:
        time.sleep(0.2)
        op = sandbox.api("GET", api_path(op["selfLink"]))
    assert op.get("status") == "DONE" and not op.get("error"), op
    return op


@pytest.fixture
def provisioned(sandbox):
    """The project's VM as playbooks/provision.yml leaves it: n1-standard-8, 1 x T4, 100 GB
    pd-balanced boot disk, RUNNING, labelled, plus the SSH firewall rule. Made through the API
    so these tests exercise the lifecycle playbooks only (tests/playbooks/test_provision.py
    covers provisioning)."""
    project = sandbox.project
    sandbox.enable_compute()
    wait_operation(sandbox, sandbox.api("POST", f"/compute/v1/projects/{project}/global/firewalls", {
        "name": "gpu-jupyter-allow-ssh", "network": "global/networks/default", "direction": "INGRESS",
        "description": "SSH to gpu-jupyter VMs. Jupyter itself listens on localhost and is reached "
                       "through an SSH tunnel.",
        "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}], "sourceRanges": ["35.235.240.0/20"],
        "targetTags": ["gpu-jupyter"]}))
    wait_operation(sandbox, sandbox.api("POST", f"/compute/v1/projects/{project}/zones/{ZONE}/instances", {
        "name": NAME,
        "machineType": f"zones/{ZONE}/machineTypes/n1-standard-8",
        "guestAccelerators": [{"acceleratorType": f"zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4",
                               "acceleratorCount": 1}],
        "scheduling": {"onHostMaintenance": "TERMINATE", "automaticRestart": True},
        "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
            "diskSizeGb": "100", "diskType": f"zones/{ZONE}/diskTypes/pd-balanced",
            "sourceImage": "projects/deeplearning-platform-release/global/images/family/"
                           "pytorch-2-9-cu129-ubuntu-2404-nvidia-580"}}],
        "networkInterfaces": [{"network": "global/networks/default",
                               "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]}],
        "tags": {"items": ["gpu-jupyter"]},
        "labels": {"managed-by": "gpu-jupyter", "purpose": "jupyter"},
        "metadata": {"items": [{"key": "install-nvidia-driver", "value": "True"}]},
        "serviceAccounts": [{"email": sandbox.vm_service_account(NAME), "scopes": [
            "https://www.googleapis.com/auth/devstorage.read_only",
            "https://www.googleapis.com/auth/logging.write",
            "https://www.googleapis.com/auth/monitoring.write"]}],
    }))
    wait_status(sandbox, NAME, ZONE, "RUNNING")
    sandbox.clear_requests()
    return sandbox


def test_reconfigure_upgrades_a_running_vm_then_converges(provisioned, run_playbook):
    sandbox = provisioned
    result = run_playbook("playbooks/reconfigure.yml", sandbox, diff=True,
                          extra_vars=dict(UPGRADE, gce_lifecycle_allow_stop=True))
    assert result.rc == 0, result
    assert result.changed == 1, result

    vm = instance(sandbox)
    assert vm["status"] == "RUNNING"
    assert vm["machineType"].endswith(f"/zones/{ZONE}/machineTypes/n1-standard-16")
    [gpu] = vm["guestAccelerators"]
    assert gpu["acceleratorType"].endswith("/acceleratorTypes/nvidia-tesla-t4") and gpu["acceleratorCount"] == 2
    assert vm["scheduling"]["onHostMaintenance"] == "TERMINATE"
    boot = next(d for d in vm["disks"] if d["boot"])
    assert int(sandbox.api("GET", api_path(boot["source"]))["sizeGb"]) == 200

    # Stopped, changed, started: in that order, and nothing else mutated.
    assert mutating(sandbox) == ["POST stop", "POST setMachineResources", "POST setMachineType",
                                 "POST resize", "POST start"], mutating(sandbox)
    # Reported: the summary and the --diff before/after.
    assert "machine_type: n1-standard-8 -> n1-standard-16 (setMachineType)" in result.stdout
    assert "accelerators: nvidia-tesla-t4=1 -> nvidia-tesla-t4=2 (setMachineResources)" in result.stdout
    assert "disks.persistent-disk-0: 100 -> 200 (disks.resize)" in result.stdout
    assert re.search(r"^-\s+machine_type: n1-standard-8$", result.stdout, re.M), result
    assert re.search(r"^\+\s+machine_type: n1-standard-16$", result.stdout, re.M), result

    sandbox.clear_requests()
    again = run_playbook("playbooks/reconfigure.yml", sandbox,
                         extra_vars=dict(UPGRADE, gce_lifecycle_allow_stop=True))
    assert again.rc == 0, again
    assert again.changed == 0, again
    assert mutating(sandbox) == []


def test_reconfigure_without_allow_stop_is_refused_before_any_change(provisioned, run_playbook):
    sandbox = provisioned
    result = run_playbook("playbooks/reconfigure.yml", sandbox, extra_vars=UPGRADE)
    assert result.rc != 0, result
    assert "machine_type (n1-standard-8 -> n1-standard-16)" in result.stdout
    assert "accelerators (nvidia-tesla-t4=1 -> nvidia-tesla-t4=2)" in result.stdout
    assert "gce_lifecycle_allow_stop=true" in result.stdout
    assert mutating(sandbox) == []
    assert instance(sandbox)["status"] == "RUNNING"


def test_disk_shrink_is_refused_with_a_clear_message(provisioned, run_playbook):
    sandbox = provisioned
    result = run_playbook("playbooks/reconfigure.yml", sandbox,
                          extra_vars={"gce_vm_disk_size_gb": 50, "gce_lifecycle_allow_stop": True})
    assert result.rc != 0, result
    assert "refusing to shrink disk 'persistent-disk-0' from 100 GB to 50 GB" in result.stdout
    assert "can only grow" in result.stdout
    assert mutating(sandbox) == []


def test_reconfigure_check_mode_reports_and_changes_nothing(provisioned, run_playbook):
    sandbox = provisioned
    result = run_playbook("playbooks/reconfigure.yml", sandbox, check=True, diff=True,
                          extra_vars=dict(UPGRADE, gce_lifecycle_allow_stop=True))
    assert result.rc == 0, result
    assert result.changed == 1, result
    assert "machine_type: n1-standard-8 -> n1-standard-16 (setMachineType)" in result.stdout
    assert mutating(sandbox) == []
    assert instance(sandbox)["machineType"].endswith("/n1-standard-8")


def test_reconfigure_rides_out_a_503_burst(provisioned, run_playbook):
    sandbox = provisioned
    sandbox.add_fault("http_error", status=503, count=3, method="POST", path_regex=r"/setMachineType$")
    result = run_playbook("playbooks/reconfigure.yml", sandbox,
                          extra_vars={"gce_vm_machine_type": "n1-standard-16", "gce_lifecycle_allow_stop": True,
                                      "gce_budget_monthly_usd": 1500})
    assert result.rc == 0, result
    assert instance(sandbox)["machineType"].endswith("/n1-standard-16")
    assert mutating(sandbox).count("POST setMachineType") == 4  # three 503s, then success


def test_stop_all_stops_only_labelled_vms_and_start_brings_one_back(provisioned, run_playbook):
    sandbox = provisioned
    create_vm(sandbox, "labelled-b", "europe-west4-a", {"managed-by": "gpu-jupyter"})
    create_vm(sandbox, "someone-else", ZONE, {"team": "web"})
    sandbox.clear_requests()

    result = run_playbook("playbooks/stop.yml", sandbox, extra_vars={"stop_all": True})
    assert result.rc == 0, result
    assert instance(sandbox)["status"] == "TERMINATED"
    assert instance(sandbox, "labelled-b", "europe-west4-a")["status"] == "TERMINATED"
    assert instance(sandbox, "someone-else")["status"] == "RUNNING"
    assert sorted(mutating(sandbox)) == ["POST stop", "POST stop"]

    sandbox.clear_requests()
    again = run_playbook("playbooks/stop.yml", sandbox, extra_vars={"stop_all": True})
    assert again.rc == 0 and again.changed == 0, again
    assert mutating(sandbox) == []

    started = run_playbook("playbooks/start.yml", sandbox)
    assert started.rc == 0 and started.changed == 1, started
    assert instance(sandbox)["status"] == "RUNNING"
    assert instance(sandbox, "labelled-b", "europe-west4-a")["status"] == "TERMINATED"
    assert f"gcloud compute ssh {NAME} --zone {ZONE}" in started.stdout

    one = run_playbook("playbooks/stop.yml", sandbox)
    assert one.rc == 0 and one.changed == 1, one
    assert instance(sandbox)["status"] == "TERMINATED"


def status_row(stdout, name):
    for line in stdout.splitlines():
        cells = re.split(r"\s{2,}", line.strip().strip('",'))
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"no status row for {name}:\n{stdout}")


def test_status_table_figures_match_the_price_table(provisioned, run_playbook):
    sandbox = provisioned
    result = run_playbook("playbooks/status.yml", sandbox)
    assert result.rc == 0 and result.changed == 0, result
    name, zone, state, machine, gpus, uptime, hourly, monthly, stopped = status_row(result.stdout, NAME)
    assert (name, zone, state, machine, gpus) == (NAME, ZONE, "RUNNING", "n1-standard-8", "1 x nvidia-tesla-t4")
    assert re.match(r"^\d+h \d\dm$", uptime)
    expected = gce_pricing.estimate(PRICES, ZONE, "n1-standard-8", 8, 30.0, gpu_type="nvidia-tesla-t4",
                                    gpu_count=1, disks=[{"type": "pd-balanced", "size_gb": 100}], external_ip=True)
    assert hourly == "$%.4f" % expected["hourly"]
    assert monthly == "$%.2f" % expected["monthly"]
    assert stopped == "$%.2f" % expected["stopped_monthly"]
    # The hand check: 100 GiB pd-balanced is what a stopped VM costs a month.
    disk_month = 100 * PRICES["regions"]["us-central1"]["disks_gib_month"]["pd-balanced"]
    assert float(stopped[1:]) == pytest.approx(disk_month, abs=0.01)
    assert f"{NAME} tunnel: gcloud compute ssh {NAME} --zone {ZONE} --project {sandbox.project}" in result.stdout
    assert "-- -N -L 8080:localhost:8080" in result.stdout
    assert mutating(sandbox) == []

    run_playbook("playbooks/stop.yml", sandbox)
    stopped_result = run_playbook("playbooks/status.yml", sandbox)
    row = status_row(stopped_result.stdout, NAME)
    assert row[2] == "TERMINATED" and row[5] == "-"
    assert row[6] == "$%.4f" % round(expected["stopped_monthly"] / 730, 4)


def test_destroy_leaves_nothing_behind(provisioned, run_playbook):
    sandbox = provisioned
    project = sandbox.project
    fw = f"/compute/v1/projects/{project}/global/firewalls/gpu-jupyter-allow-ssh"
    disk = f"/compute/v1/projects/{project}/zones/{ZONE}/disks/{NAME}"
    vm_path = f"/compute/v1/projects/{project}/zones/{ZONE}/instances/{NAME}"

    account = f"{NAME}-vm@{project}.iam.gserviceaccount.com"
    # The VM and its service account's grants (google.cloud's account module has no check mode: the
    # report names the account all the same).
    check = run_playbook("playbooks/destroy.yml", sandbox, check=True)
    assert check.rc == 0 and check.changed == 2, check
    assert (f"Would delete: instances {NAME}; disks {NAME}; firewalls gpu-jupyter-allow-ssh; "
            f"service account {account}") in flat(check)
    assert mutating(sandbox) == []

    # No terminal to answer the prompt: refused, nothing deleted.
    unconfirmed = run_playbook("playbooks/destroy.yml", sandbox)
    assert unconfirmed.rc != 0, unconfirmed
    assert "Not confirmed: nothing was deleted" in unconfirmed.stdout
    assert mutating(sandbox) == []

    done = run_playbook("playbooks/destroy.yml", sandbox, extra_vars={"destroy_confirm": "yes"})
    assert done.rc == 0 and done.changed == 3, done   # the VM, its account's grants, the account
    assert f"service account {account}" in flat(done)
    assert not exists(sandbox, f"/iam/v1/projects/{project}/serviceAccounts/{account}")
    assert not exists(sandbox, vm_path)
    assert not exists(sandbox, disk)
    assert not exists(sandbox, fw)
    listing = sandbox.api("GET", f"/compute/v1/projects/{project}/aggregated/disks")
    assert not any(scope.get("disks") for scope in listing.get("items", {}).values())

    sandbox.clear_requests()
    again = run_playbook("playbooks/destroy.yml", sandbox, extra_vars={"destroy_confirm": "yes"})
    assert again.rc == 0 and again.changed == 0, again
    assert mutating(sandbox) == []


def test_destroy_keeps_the_firewall_while_another_managed_vm_exists(provisioned, run_playbook):
    sandbox = provisioned
    create_vm(sandbox, "labelled-b", ZONE, {"managed-by": "gpu-jupyter"})
    result = run_playbook("playbooks/destroy.yml", sandbox, extra_vars={"destroy_confirm": True})
    assert result.rc == 0, result
    assert exists(sandbox, f"/compute/v1/projects/{sandbox.project}/global/firewalls/gpu-jupyter-allow-ssh")
    assert "still used by labelled-b (us-central1-a)" in result.stdout


def add_data_disk_vm(sandbox, name, disk_name):
    """A managed VM with an existing data disk attached (autoDelete false, as attaching one is)."""
    project = sandbox.project
    wait_operation(sandbox, sandbox.api("POST", f"/compute/v1/projects/{project}/zones/{ZONE}/disks",
                                        {"name": disk_name, "sizeGb": "20"}))
    wait_operation(sandbox, sandbox.api("POST", f"/compute/v1/projects/{project}/zones/{ZONE}/instances", {
        "name": name, "machineType": f"zones/{ZONE}/machineTypes/e2-small",
        "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
                       "sourceImage": "projects/debian-cloud/global/images/family/debian-12"}},
                  {"source": f"zones/{ZONE}/disks/{disk_name}", "deviceName": "data"}],
        "networkInterfaces": [{"network": "global/networks/default"}],
        "labels": {"managed-by": "gpu-jupyter"}}))
    wait_status(sandbox, name, ZONE, "RUNNING")


def test_destroy_keeps_or_deletes_the_data_disk(sandbox, run_playbook):
    sandbox.enable_compute()
    project = sandbox.project
    disks = f"/compute/v1/projects/{project}/zones/{ZONE}/disks/"
    add_data_disk_vm(sandbox, "keeper", "keeper-data")
    add_data_disk_vm(sandbox, "dropper", "dropper-data")

    kept = run_playbook("playbooks/destroy.yml", sandbox,
                        extra_vars={"gce_vm_name": "keeper", "destroy_confirm": True, "destroy_keep_data_disk": True})
    assert kept.rc == 0, kept
    assert not exists(sandbox, disks + "keeper")
    data = sandbox.api("GET", disks + "keeper-data")
    assert not data.get("users")  # detached, intact
    assert "Kept: disks keeper-data" in kept.stdout

    dropped = run_playbook("playbooks/destroy.yml", sandbox,
                           extra_vars={"gce_vm_name": "dropper", "destroy_confirm": True})
    assert dropped.rc == 0, dropped
    assert not exists(sandbox, disks + "dropper") and not exists(sandbox, disks + "dropper-data")
    assert exists(sandbox, disks + "keeper-data")


def test_reconfigure_right_after_provisioning_changes_nothing(sandbox, run_playbook):
    """Same variables, same VM: what provision.yml creates is what reconfigure.yml wants."""
    provision = run_playbook("playbooks/provision.yml", sandbox)
    assert provision.rc == 0, provision
    sandbox.clear_requests()
    result = run_playbook("playbooks/reconfigure.yml", sandbox)
    assert result.rc == 0 and result.changed == 0, result
    assert "VM jupyter-gpu: nothing to change" in result.stdout
    assert mutating(sandbox) == []


# ---- A VM that zone failover put in another zone than gce_vm_zone ---------------------------

FAILOVER_ZONE = "us-central1-c"


def zones_of(sandbox, name):
    return sorted(zone for zone, table in (sandbox.state().get("instances") or {}).items() if name in table)


@pytest.fixture
def failed_over(sandbox):
    """The project's VM as provision.yml leaves it when gce_vm_zone (us-central1-a) is out of
    capacity: created in the next candidate zone, while gce_vm_zone still says us-central1-a."""
    sandbox.enable_compute()
    sandbox.add_fault("zone_exhausted", zone=ZONE, count=1)
    result = run_playbook("playbooks/provision.yml", sandbox,
                          extra_vars={"gce_vm_candidate_zones": [ZONE, FAILOVER_ZONE]})
    assert result.rc == 0, result
    assert zones_of(sandbox, NAME) == [FAILOVER_ZONE]
    sandbox.clear_requests()
    return sandbox


def test_every_action_finds_the_vm_in_the_zone_failover_chose(failed_over, run_playbook):
    sandbox = failed_over
    project = sandbox.project

    status = run_playbook("playbooks/status.yml", sandbox)
    assert status.rc == 0, status
    assert status_row(status.stdout, NAME)[1:3] == [FAILOVER_ZONE, "RUNNING"]

    stop = run_playbook("playbooks/stop.yml", sandbox)
    assert stop.rc == 0 and stop.changed == 1, stop
    assert instance(sandbox, NAME, FAILOVER_ZONE)["status"] == "TERMINATED"
    assert f"VM {NAME} ({FAILOVER_ZONE}) is TERMINATED" in flat(stop)
    assert f"VM {NAME} is in zone {FAILOVER_ZONE}, not {ZONE} (zone failover?)" in flat(stop)
    assert mutating(sandbox) == ["POST stop"]

    sandbox.clear_requests()
    start = run_playbook("playbooks/start.yml", sandbox)
    assert start.rc == 0 and start.changed == 1, start
    assert instance(sandbox, NAME, FAILOVER_ZONE)["status"] == "RUNNING"
    assert f"gcloud compute ssh {NAME} --zone {FAILOVER_ZONE}" in start.stdout
    assert mutating(sandbox) == ["POST start"]

    sandbox.clear_requests()
    reconfigure = run_playbook("playbooks/reconfigure.yml", sandbox)
    assert reconfigure.rc == 0 and reconfigure.changed == 0, reconfigure
    assert f"VM {NAME}: nothing to change" in reconfigure.stdout
    assert mutating(sandbox) == []

    check = run_playbook("playbooks/destroy.yml", sandbox, check=True)
    # The VM, its service account's grants, and the Cloud NAT with it.
    assert check.rc == 0 and check.changed == 3, check
    assert (f"Would delete: instances {NAME}; disks {NAME}; firewalls gpu-jupyter-allow-ssh; "
            f"service account {NAME}-vm@{project}.iam.gserviceaccount.com; "
            "Cloud NAT gpu-jupyter-router (router and NAT)") in flat(check)
    assert mutating(sandbox) == []

    done = run_playbook("playbooks/destroy.yml", sandbox, extra_vars={"destroy_confirm": "yes"})
    assert done.rc == 0 and done.changed == 4, done   # and the account itself
    assert (f"Deleted: instances {NAME}; disks {NAME}; firewalls gpu-jupyter-allow-ssh; "
            f"service account {NAME}-vm@{project}.iam.gserviceaccount.com; "
            "Cloud NAT gpu-jupyter-router (router and NAT)") in flat(done)
    assert not exists(sandbox, f"/compute/v1/projects/{project}/regions/us-central1/routers/gpu-jupyter-router")
    assert zones_of(sandbox, NAME) == []
    assert not exists(sandbox, f"/compute/v1/projects/{project}/zones/{FAILOVER_ZONE}/disks/{NAME}")
    assert not exists(sandbox, f"/compute/v1/projects/{project}/global/firewalls/gpu-jupyter-allow-ssh")
    listing = sandbox.api("GET", f"/compute/v1/projects/{project}/aggregated/disks")
    assert not any(scope.get("disks") for scope in listing.get("items", {}).values())

    sandbox.clear_requests()
    again = run_playbook("playbooks/destroy.yml", sandbox, extra_vars={"destroy_confirm": "yes"})
    assert again.rc == 0 and again.changed == 0, again
    assert f"Nothing to delete: no VM named {NAME} in any zone of project {project}" in flat(again)
    assert mutating(sandbox) == []


def test_a_vm_in_no_zone_fails_naming_gce_vm_name(sandbox, run_playbook):
    sandbox.enable_compute()
    create_vm(sandbox, "labelled-b", FAILOVER_ZONE, {"managed-by": "gpu-jupyter"})  # not the one asked for
    sandbox.clear_requests()
    for playbook in ("stop", "start", "reconfigure"):
        result = run_playbook(f"playbooks/{playbook}.yml", sandbox)
        assert result.rc != 0, (playbook, result)
        text = flat(result)
        assert (f"VM {NAME} not found in project {sandbox.project}: every zone was searched for a VM of that "
                "name labelled managed-by=gpu-jupyter") in text, (playbook, result)
        assert "Set gce_vm_name to the VM's name" in text, (playbook, result)
    assert mutating(sandbox) == []
    assert instance(sandbox, "labelled-b", FAILOVER_ZONE)["status"] == "RUNNING"


def test_a_same_named_vm_without_the_labels_is_refused(sandbox, run_playbook):
    """Found by name only, without the project's labels: not the project's VM, and not 'nothing to delete'."""
    sandbox.enable_compute()
    create_vm(sandbox, NAME, FAILOVER_ZONE, {"team": "web"})
    sandbox.clear_requests()
    for playbook, extra in (("stop", {}), ("destroy", {"destroy_confirm": "yes"})):
        result = run_playbook(f"playbooks/{playbook}.yml", sandbox, extra_vars=extra)
        assert result.rc != 0, (playbook, result)
        assert (f"VM {NAME} exists in project {sandbox.project} (zone {FAILOVER_ZONE}) but lacks the label(s) "
                "managed-by=gpu-jupyter") in flat(result), (playbook, result)
    assert mutating(sandbox) == []
    assert instance(sandbox, NAME, FAILOVER_ZONE)["status"] == "RUNNING"


def test_same_named_vms_in_two_zones_need_gce_lifecycle_zone(sandbox, run_playbook):
    sandbox.enable_compute()
    create_vm(sandbox, NAME, FAILOVER_ZONE, {"managed-by": "gpu-jupyter"})
    create_vm(sandbox, NAME, "europe-west4-a", {"managed-by": "gpu-jupyter"})
    sandbox.clear_requests()

    refused = run_playbook("playbooks/stop.yml", sandbox)
    assert refused.rc != 0, refused
    assert (f"VMs named {NAME} are in zones europe-west4-a, {FAILOVER_ZONE} of project {sandbox.project}, "
            f"and gce_lifecycle_zone ({ZONE}) names none of them") in flat(refused), refused
    assert mutating(sandbox) == []

    picked = run_playbook("playbooks/stop.yml", sandbox, extra_vars={"gce_lifecycle_zone": FAILOVER_ZONE})
    assert picked.rc == 0 and picked.changed == 1, picked
    assert "VMs of the same name left alone: europe-west4-a." in flat(picked)
    assert instance(sandbox, NAME, FAILOVER_ZONE)["status"] == "TERMINATED"
    assert instance(sandbox, NAME, "europe-west4-a")["status"] == "RUNNING"


def test_up_on_a_vm_that_differs_says_what_and_changes_nothing(provisioned, run_playbook):
    """site.yml on an existing VM whose GPUs and disk differ from the declaration: the difference
    is reported with the command that applies it, and nothing is sent that changes anything."""
    sandbox = provisioned
    sandbox.clear_requests()
    result = run_playbook("site.yml", sandbox, env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}, extra_vars={
        "gce_vm_gpu_count": 2, "gce_vm_disk_size_gb": 200, "gce_budget_monthly_usd": 2000})
    assert result.rc == 0, result
    assert ("differs from the declaration: GPUs 1 x nvidia-tesla-t4 (wanted 2 x nvidia-tesla-t4); "
            "boot disk 100 GB (wanted 200 GB). Nothing was changed.") in result.stdout, result.stdout[-3000:]
    assert "make reconfigure" in result.stdout
    # Nothing of the VM changes (the fixture's VM was made without the Cloud NAT provisioning adds).
    assert [c for c in mutating(sandbox) if c != "POST routers"] == []
    vm = instance(sandbox)
    assert [a["acceleratorCount"] for a in vm["guestAccelerators"]] == [1]
    assert vm["disks"][0]["diskSizeGb"] == "100"


def test_up_asking_for_a_smaller_disk_says_it_cannot_shrink(provisioned, run_playbook):
    sandbox = provisioned
    sandbox.clear_requests()
    result = run_playbook("site.yml", sandbox, env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"},
                          extra_vars={"gce_vm_disk_size_gb": 60})
    assert result.rc == 0, result
    assert "boot disk 100 GB (wanted 60 GB; a disk cannot shrink: set gce_vm_disk_size_gb to 100)" in result.stdout
    assert [c for c in mutating(sandbox) if c != "POST routers"] == []
