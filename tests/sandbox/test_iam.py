"""IAM as the VM's dedicated service account needs it: iam.googleapis.com service accounts, the
project's IAM policy (Cloud Resource Manager v1 and v3) and a bucket's IAM policy (Storage JSON
API), with the real APIs' error shapes (sources in gce_sandbox/iam.py and storage.py), and GCE
refusing a VM whose service account does not exist.
"""

from __future__ import annotations

import requests

from .helpers import PROJECT, vm_body, wait_op, zpath

SA = f"/iam/v1/projects/{PROJECT}/serviceAccounts"
EMAIL = f"jupyter-gpu-vm@{PROJECT}.iam.gserviceaccount.com"
CRM = f"/cloudresourcemanager/v1/projects/{PROJECT}"


def enable_iam(sb):
    op = sb.api("POST", f"/serviceusage/v1/projects/{PROJECT}/services/iam.googleapis.com:enable", {})
    if not op.get("done"):
        sb.api("GET", f"/serviceusage/v1/{op['name']}")


def create_sa(sb, account_id="jupyter-gpu-vm"):
    return sb.call("POST", SA, {"accountId": account_id, "serviceAccount": {"displayName": "VM"}})


def test_service_account_create_get_list_delete(sb):
    enable_iam(sb)
    status, sa = create_sa(sb)
    assert status == 200
    assert sa["email"] == EMAIL and sa["name"] == f"projects/{PROJECT}/serviceAccounts/{EMAIL}"
    assert sa["projectId"] == PROJECT and sa["displayName"] == "VM" and sa["uniqueId"].isdigit()
    assert sb.api("GET", f"{SA}/{EMAIL}") == sa
    assert sb.api("GET", f"{SA}/{sa['uniqueId']}") == sa
    assert [a["email"] for a in sb.api("GET", SA)["accounts"]] == [EMAIL]
    # Twice: 409 ALREADY_EXISTS, in IAM's words.
    status, err = create_sa(sb)
    assert (status, err["error"]["status"], err["error"]["errors"][0]["reason"]) == (409, "ALREADY_EXISTS",
                                                                                   "alreadyExists")
    assert err["error"]["message"] == (f"Service account jupyter-gpu-vm already exists within project "
                                       f"projects/{PROJECT}.")
    assert sb.call("DELETE", f"{SA}/{EMAIL}")[0] == 200
    status, err = sb.call("GET", f"{SA}/{EMAIL}")
    assert (status, err["error"]["status"]) == (404, "NOT_FOUND")
    assert err["error"]["message"] == f"Not found; Gaia id not found for email {EMAIL}"
    assert sb.call("DELETE", f"{SA}/{EMAIL}")[0] == 404
    assert sb.api("GET", SA) == {}


def test_account_ids_follow_the_documented_rule(sb):
    enable_iam(sb)
    for bad in ("short", "a" * 31, "1starts-with-digit", "ends-with-", "Upper-case", "under_score"):
        status, err = create_sa(sb, bad)
        assert (status, err["error"]["status"]) == (400, "INVALID_ARGUMENT"), bad
        assert "6-30 characters" in err["error"]["message"]
    assert create_sa(sb, "a" * 30)[0] == 200
    assert create_sa(sb, "abcdef")[0] == 200


def test_iam_needs_its_api_enabled(sb):
    status, err = create_sa(sb)
    assert status == 403 and err["error"]["details"][0]["reason"] == "SERVICE_DISABLED"
    assert "Identity and Access Management (IAM) API" in err["error"]["message"]


def test_project_policy_read_modify_write_with_etag(sb):
    enable_iam(sb)
    policy = sb.api("POST", f"{CRM}:getIamPolicy", {"options": {"requestedPolicyVersion": 1}})
    editors = next(b for b in policy["bindings"] if b["role"] == "roles/editor")["members"]
    # A new project: the Compute Engine default account is an editor.
    assert any(m.endswith("-compute@developer.gserviceaccount.com") for m in editors)
    # A member that does not exist is refused.
    stale = dict(policy, bindings=policy["bindings"] + [{"role": "roles/logging.logWriter",
                                                          "members": [f"serviceAccount:{EMAIL}"]}])
    status, err = sb.call("POST", f"{CRM}:setIamPolicy", {"policy": stale})
    assert (status, err["error"]["message"]) == (400, f"Service account {EMAIL} does not exist.")
    create_sa(sb)
    new = sb.api("POST", f"{CRM}:setIamPolicy", {"policy": stale})
    assert new["etag"] != policy["etag"]
    assert {"role": "roles/logging.logWriter", "members": [f"serviceAccount:{EMAIL}"]} in new["bindings"]
    # The same read-modify-write again, with the etag it read: someone changed it since.
    status, err = sb.call("POST", f"{CRM}:setIamPolicy", {"policy": stale})
    assert (status, err["error"]["status"]) == (409, "ABORTED")
    assert err["error"]["message"].startswith("There were concurrent policy changes. Please retry the whole "
                                              "read-modify-write with exponential backoff.")
    # v3 reads the same policy; getIamPolicy is logged as a read.
    assert sb.api("POST", f"/cloudresourcemanager/v3/projects/{PROJECT}:getIamPolicy", {}) == new
    assert sb.api("GET", f"/cloudresourcemanager/v3/projects/{PROJECT}")["projectId"] == PROJECT
    gets = [r for r in sb.requests() if r["method_id"] == "cloudresourcemanager.projects.getIamPolicy"]
    assert gets and not any(r["mutating"] for r in gets)


def test_bucket_policy(sb):
    enable_iam(sb)
    status, err = sb.call("GET", "/storage/v1/b/data-bucket/iam")
    assert (status, err["error"]["message"]) == (404, "The specified bucket does not exist.")
    assert sb.api("POST", f"/storage/v1/b?project={PROJECT}", {"name": "data-bucket"})["name"] == "data-bucket"
    assert sb.call("POST", f"/storage/v1/b?project={PROJECT}", {"name": "data-bucket"})[0] == 409
    policy = sb.api("GET", "/storage/v1/b/data-bucket/iam")
    assert (policy["kind"], policy["etag"], policy["resourceId"]) == ("storage#policy", "CAE=",
                                                                      "projects/_/buckets/data-bucket")
    viewer = {"role": "roles/storage.objectViewer", "members": [f"serviceAccount:{EMAIL}"]}
    wanted = dict(policy, bindings=policy["bindings"] + [viewer])
    status, err = sb.call("PUT", "/storage/v1/b/data-bucket/iam", wanted)
    assert (status, err["error"]["message"]) == (400, f"Service account {EMAIL} does not exist.")
    create_sa(sb)
    new = sb.api("PUT", "/storage/v1/b/data-bucket/iam", wanted)
    assert new["etag"] == "CAI=" and viewer in new["bindings"]
    status, err = sb.call("PUT", "/storage/v1/b/data-bucket/iam", wanted)
    assert (status, err["error"]["errors"][0]["reason"]) == (412, "conditionNotMet")
    # Objects are not this sandbox's business: it says so.
    assert sb.call("GET", "/storage/v1/b/data-bucket/o")[0] in (404, 501)


def test_a_vm_needs_an_existing_service_account(sb):
    enable_iam(sb)
    body = vm_body()
    body["serviceAccounts"] = [{"email": EMAIL, "scopes": ["https://www.googleapis.com/auth/logging.write"]}]
    status, err = sb.call("POST", zpath("instances"), body)
    assert status == 400
    assert err["error"]["message"] == f"The resource 'One of [{EMAIL}]' of type 'serviceAccount' was not found."
    create_sa(sb)
    wait_op(sb, sb.api("POST", zpath("instances"), body))
    assert sb.api("GET", zpath("instances/vm1"))["serviceAccounts"][0]["email"] == EMAIL


def test_through_the_https_proxy(sb):
    enable_iam(sb)
    env = sb.shell_env
    proxies = {"https": env["HTTPS_PROXY"]}
    headers = {"Authorization": f"Bearer {env['GCE_SANDBOX_ACCESS_TOKEN']}"}
    resp = requests.post(f"https://iam.googleapis.com/v1/projects/{PROJECT}/serviceAccounts", proxies=proxies,
                         verify=env["REQUESTS_CA_BUNDLE"], headers=headers, timeout=30,
                         json={"accountId": "jupyter-gpu-vm"})
    assert resp.status_code == 200, resp.text
    resp = requests.post(f"https://cloudresourcemanager.googleapis.com/v1/projects/{PROJECT}:getIamPolicy",
                         proxies=proxies, verify=env["REQUESTS_CA_BUNDLE"], headers=headers, timeout=30, json={})
    assert resp.status_code == 200 and resp.json()["etag"]
    resp = requests.get("https://storage.googleapis.com/storage/v1/b/none-such/iam", proxies=proxies,
                        verify=env["REQUESTS_CA_BUNDLE"], headers=headers, timeout=30)
    assert resp.status_code == 404
