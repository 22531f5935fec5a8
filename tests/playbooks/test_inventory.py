"""inventories/gcp/gcp_compute.yml (google.cloud.gcp_compute) against the sandbox: the project's VMs
found by label, named by VM name, addressed and grouped right."""

import json
import os
import subprocess

import yaml

from conftest import BIN, REPO

INVENTORY = REPO / "inventories" / "gcp" / "gcp_compute.yml"


def plain(value):
    """ansible-inventory marks templated values {"__ansible_unsafe": ...}; the value is what matters."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def create_vm(sb, name, zone, labels, external=True, spot=False):
    body = {
        "name": name,
        "machineType": f"zones/{zone}/machineTypes/n1-standard-4",
        "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
            "sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
        "networkInterfaces": [{
            "network": "global/networks/default",
            "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}] if external else []}],
        "labels": labels,
    }
    if spot:
        body["scheduling"] = {"provisioningModel": "SPOT", "instanceTerminationAction": "STOP"}
    sb.api("POST", f"/compute/v1/projects/{sb.project}/zones/{zone}/instances", body)
    return sb.api("GET", f"/compute/v1/projects/{sb.project}/zones/{zone}/instances/{name}")


def test_inventory_finds_labelled_vms_and_groups_them(sandbox, tmp_path):
    sandbox.enable_compute()
    alice = create_vm(sandbox, "jupyter-alice", "us-central1-a", {"managed-by": "gpu-jupyter", "owner": "alice"})
    bob = create_vm(sandbox, "jupyter-bob", "us-east1-c", {"managed-by": "gpu-jupyter", "owner": "bob"},
                    external=False, spot=True)
    create_vm(sandbox, "someone-elses-vm", "us-central1-b", {"owner": "carol"})
    sandbox.api("POST", f"/compute/v1/projects/{sandbox.project}/zones/us-east1-c/instances/jupyter-bob/stop")

    # The shipped file, with the project set as its comment tells users to.
    config = yaml.safe_load(INVENTORY.read_text())
    assert config["plugin"] == "google.cloud.gcp_compute"
    config["projects"] = [sandbox.project]
    path = tmp_path / "gcp_compute.yml"
    path.write_text(yaml.safe_dump(config))

    sandbox.clear_requests()
    env = dict(os.environ, **sandbox.env, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    proc = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(path), "--list"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    inv = json.loads(proc.stdout)
    hostvars = plain(inv["_meta"]["hostvars"])

    assert set(hostvars) == {"jupyter-alice", "jupyter-bob"}

    def group(name):
        return set(inv.get(name, {}).get("hosts", []))

    assert group("jupyter_vms") == {"jupyter-alice", "jupyter-bob"}
    assert group("jupyter_vms_running") == {"jupyter-alice"}
    assert group("spot_vms") == {"jupyter-bob"}
    assert group("label_owner_alice") == {"jupyter-alice"}
    assert group("label_owner_bob") == {"jupyter-bob"}
    assert group("label_managed_by_gpu_jupyter") == {"jupyter-alice", "jupyter-bob"}
    assert group("zone_us_central1_a") == {"jupyter-alice"}
    assert group("zone_us_east1_c") == {"jupyter-bob"}
    assert group("status_running") == {"jupyter-alice"}
    assert group("status_terminated") == {"jupyter-bob"}

    nat_ip = alice["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
    assert hostvars["jupyter-alice"]["ansible_host"] == nat_ip
    # No external address: the internal one.
    assert hostvars["jupyter-bob"]["ansible_host"] == bob["networkInterfaces"][0]["networkIP"]
    assert hostvars["jupyter-bob"]["ansible_gcloud_zone"] == "us-east1-c"
    assert hostvars["jupyter-bob"]["ansible_gcloud_host"] == "jupyter-bob"
    assert hostvars["jupyter-bob"]["ansible_gcloud_project"] == sandbox.project
    assert hostvars["jupyter-bob"]["gce_vm_provisioning_model"] == "SPOT"

    # One request: the label filter runs server side.
    [request] = sandbox.requests()
    assert request["method_id"] == "compute.instances.aggregatedList"
    assert request["query"]["filter"] == "labels.managed-by = gpu-jupyter"
