"""The VM's own least-privilege service account, against the local GCE sandbox: created before the
VM with only the roles it needs, the VM runs as it, a rerun writes nothing, an override makes no IAM
call at all, a name that cannot make an account id is refused before anything is created, an
account of that name the project did not make is left alone, and destroy removes it with the last
VM that runs as it."""

from conftest import run_playbook

ZONE = "us-central1-a"
NAME = "jupyter-gpu"
BUCKET = "training-data"


def email(sandbox, account_id="jupyter-gpu-vm"):
    return f"{account_id}@{sandbox.project}.iam.gserviceaccount.com"


def member_roles(policy, member):
    return sorted(b["role"] for b in policy.get("bindings", []) if member in b.get("members", []))


def project_policy(sandbox):
    return sandbox.api("POST", f"/cloudresourcemanager/v1/projects/{sandbox.project}:getIamPolicy", {})


def bucket_policy(sandbox, bucket=BUCKET):
    return sandbox.api("GET", f"/storage/v1/b/{bucket}/iam")


def accounts(sandbox):
    return [a["email"] for a in sandbox.api("GET", f"/iam/v1/projects/{sandbox.project}/serviceAccounts")
            .get("accounts", [])]


def vm(sandbox, name=NAME):
    return sandbox.api("GET", f"/compute/v1/projects/{sandbox.project}/zones/{ZONE}/instances/{name}")


def iam_calls(sandbox, mutating=None):
    return [r for r in sandbox.requests(mutating=mutating)
            if r["host"] in ("iam.googleapis.com", "cloudresourcemanager.googleapis.com", "storage.googleapis.com")
            or (r["method_id"] or "").startswith(("iam.", "cloudresourcemanager.", "storage."))]


PULLS = {"gcs_pull_pulls": [{"src": f"gs://{BUCKET}/datasets/cifar10", "dest": "/home/jupyter/data/cifar10",
                             "owner": "jupyter"},
                            {"src": f"gs://{BUCKET}/datasets/mnist", "dest": "/home/jupyter/data/mnist"}]}


def test_provision_creates_the_account_grants_only_what_the_vm_needs_and_destroy_removes_it(sandbox):
    sandbox.api("POST", f"/storage/v1/b?project={sandbox.project}", {"name": BUCKET})
    sandbox.api("POST", f"/storage/v1/b?project={sandbox.project}", {"name": "other-bucket"})
    sandbox.clear_requests()
    first = run_playbook("playbooks/provision.yml", sandbox, extra_vars=PULLS)
    assert first.rc == 0, first
    sa = email(sandbox)
    member = f"serviceAccount:{sa}"
    assert accounts(sandbox) == [sa]
    # Exactly these grants: logs and metrics on the project, read on the bucket it pulls from.
    assert member_roles(project_policy(sandbox), member) == ["roles/logging.logWriter",
                                                             "roles/monitoring.metricWriter"]
    assert member_roles(bucket_policy(sandbox), member) == ["roles/storage.objectViewer"]
    assert member_roles(bucket_policy(sandbox, "other-bucket"), member) == []
    # The VM runs as it, with narrow scopes; the account and its grants came before the VM.
    [vm_sa] = vm(sandbox)["serviceAccounts"]
    assert vm_sa["email"] == sa
    assert "https://www.googleapis.com/auth/cloud-platform" not in vm_sa["scopes"]
    order = [r["method_id"] for r in sandbox.requests(mutating=True)]
    assert order.index("iam.projects.serviceAccounts.create") < order.index("compute.instances.insert")
    assert order.index("cloudresourcemanager.projects.setIamPolicy") < order.index("compute.instances.insert")
    assert order.index("storage.buckets.setIamPolicy") < order.index("compute.instances.insert")

    sandbox.clear_requests()
    second = run_playbook("playbooks/provision.yml", sandbox, extra_vars=PULLS)
    assert second.rc == 0, second
    assert second.changed == 0, second
    assert sandbox.requests(mutating=True) == []

    # Someone else's binding on the project stays through destroy.
    policy = project_policy(sandbox)
    policy["bindings"].append({"role": "roles/logging.logWriter", "members": ["user:alice@example.com"]})
    sandbox.api("POST", f"/cloudresourcemanager/v1/projects/{sandbox.project}:setIamPolicy", {"policy": policy})

    check = run_playbook("playbooks/destroy.yml", sandbox, extra_vars=dict(PULLS, destroy_confirm="yes"),
                         check=True)
    assert check.rc == 0, check
    assert accounts(sandbox) == [sa]
    done = run_playbook("playbooks/destroy.yml", sandbox, extra_vars=dict(PULLS, destroy_confirm="yes"))
    assert done.rc == 0, done
    assert f"service account {sa}" in done.stdout
    assert accounts(sandbox) == []
    after = project_policy(sandbox)
    assert not any(member in b["members"] for b in after["bindings"])
    assert "user:alice@example.com" in next(b for b in after["bindings"]
                                            if b["role"] == "roles/logging.logWriter")["members"]
    assert member_roles(bucket_policy(sandbox), member) == []


def test_an_override_sends_no_iam_call(sandbox):
    other = email(sandbox, "my-own-account")
    result = run_playbook("playbooks/provision.yml", sandbox,
                          extra_vars={"gce_vm_service_account": "default"})
    assert result.rc == 0, result
    assert iam_calls(sandbox) == []
    assert vm(sandbox)["serviceAccounts"][0]["email"].endswith("-compute@developer.gserviceaccount.com")
    done = run_playbook("playbooks/destroy.yml", sandbox,
                        extra_vars={"gce_vm_service_account": "default", "destroy_confirm": "yes"})
    assert done.rc == 0, done
    assert iam_calls(sandbox) == []
    # An email that does not exist: GCE refuses the VM, and nothing was created for it.
    sandbox.clear_requests()
    refused = run_playbook("playbooks/provision.yml", sandbox, extra_vars={"gce_vm_service_account": other})
    assert refused.rc != 0
    assert f"'One of [{other}]' of type 'serviceAccount' was not found" in refused.stdout
    assert iam_calls(sandbox, mutating=True) == []


def test_a_name_that_cannot_make_an_account_id_is_refused_before_anything(sandbox):
    sandbox.clear_requests()
    result = run_playbook("playbooks/provision.yml", sandbox, extra_vars={"gce_vm_name": "gp"})
    assert result.rc != 0
    assert "gce_vm_service_account_id" in result.stdout and "gp-vm" in result.stdout
    assert sandbox.requests(mutating=True) == []
    ok = run_playbook("playbooks/provision.yml", sandbox,
                      extra_vars={"gce_vm_name": "gp", "gce_vm_service_account_id": "gpu-notebook-vm"})
    assert ok.rc == 0, ok
    assert vm(sandbox, "gp")["serviceAccounts"][0]["email"] == email(sandbox, "gpu-notebook-vm")


def test_an_account_of_that_name_the_project_did_not_make_is_left_alone(sandbox):
    op = sandbox.api("POST", f"/serviceusage/v1/projects/{sandbox.project}/services/iam.googleapis.com:enable", {})
    if not op.get("done"):
        sandbox.api("GET", f"/serviceusage/v1/{op['name']}")
    sandbox.api("POST", f"/iam/v1/projects/{sandbox.project}/serviceAccounts",
                {"accountId": "jupyter-gpu-vm", "serviceAccount": {"displayName": "Alice's pipeline"}})
    sandbox.clear_requests()
    result = run_playbook("playbooks/provision.yml", sandbox)
    assert result.rc != 0
    assert "was not created for this VM" in result.stdout and "gce_vm_service_account_id" in result.stdout
    assert [r["method_id"] for r in sandbox.requests(mutating=True)
            if r["method_id"] in ("compute.instances.insert", "cloudresourcemanager.projects.setIamPolicy")] == []
    assert accounts(sandbox) == [email(sandbox)]


def test_a_partial_destroy_keeps_the_account_the_other_vms_run_as(sandbox):
    fleet = {"gce_vm_count": 2, "gce_budget_monthly_usd": 2500}
    assert run_playbook("playbooks/provision.yml", sandbox, extra_vars=fleet).rc == 0
    sa = email(sandbox)
    assert vm(sandbox, f"{NAME}-2")["serviceAccounts"][0]["email"] == sa
    one = run_playbook("playbooks/destroy.yml", sandbox,
                       extra_vars={"gce_vm_names": [f"{NAME}-2"], "destroy_confirm": "yes"})
    assert one.rc == 0, one
    # jupyter-gpu still runs as it: the account and its grants stay.
    assert accounts(sandbox) == [sa]
    assert member_roles(project_policy(sandbox), f"serviceAccount:{sa}") == ["roles/logging.logWriter",
                                                                             "roles/monitoring.metricWriter"]
    rest = run_playbook("playbooks/destroy.yml", sandbox, extra_vars={"destroy_confirm": "yes"})
    assert rest.rc == 0, rest
    assert accounts(sandbox) == []
