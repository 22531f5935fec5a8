"""gce_iam_binding: one member's roles on a project or bucket policy, by an etag-guarded
read-modify-write that leaves everyone else's bindings alone."""

import copy

import pytest
from tests.support.fake_module import load

iam = load("gce_iam_binding")
from ansible.module_utils.gce_client import GceApiError  # noqa: E402

SA = "serviceAccount:jupyter-gpu-vm@p.iam.gserviceaccount.com"
OTHER = "user:alice@example.com"
ROLES = ["roles/logging.logWriter", "roles/monitoring.metricWriter"]
CONDITIONAL = {"role": "roles/logging.logWriter", "members": [SA],
               "condition": {"title": "until 2027", "expression": "request.time < timestamp('2027-01-01T00:00:00Z')"}}


class Store:
    """A policy behind an etag, as Resource Manager keeps it; `race` policies written by someone
    else between our read and our write; `unknown` writes refused while IAM does not know SA yet."""

    def __init__(self, bindings, race=0, unknown=0, status=409):
        self.policy = {"version": 1, "etag": "e0", "bindings": copy.deepcopy(bindings)}
        self.race = race
        self.unknown = unknown
        self.status = status
        self.reads = 0
        self.writes = []

    def _bump(self):
        self.policy["etag"] = "e%d" % (int(self.policy["etag"][1:]) + 1)

    def read(self):
        self.reads += 1
        return copy.deepcopy(self.policy)

    def write(self, policy):
        self.writes.append(copy.deepcopy(policy))
        if self.race:
            self.race -= 1
            racer = "user:racer%d@example.com" % self.race
            self.policy["bindings"].append({"role": "roles/viewer", "members": [racer]})
            self._bump()
        if policy.get("etag") != self.policy["etag"]:
            raise GceApiError(self.status, "aborted", "There were concurrent policy changes.")
        if self.unknown:
            self.unknown -= 1
            raise GceApiError(400, "badRequest", "Service account %s does not exist." % SA.split(":", 1)[1])
        self.policy = dict(copy.deepcopy(policy))
        self._bump()
        return copy.deepcopy(self.policy)


def run(store, state="present", roles=ROLES, check=False, **kw):
    sleeps = []
    clock = kw.pop("clock", lambda: sum(sleeps))
    result = iam.converge(store, SA, roles, state, check, sleep=sleeps.append, clock=clock, **kw)
    return result, sleeps


def test_grants_only_what_is_missing_and_keeps_everyone_else():
    store = Store([{"role": "roles/logging.logWriter", "members": [OTHER]},
                   {"role": "roles/owner", "members": [OTHER]}])
    result, _ = run(store)
    assert result["added"] == ROLES and result["roles"] == sorted(ROLES) and result["attempts"] == 1
    assert store.policy["bindings"][:2] == [{"role": "roles/logging.logWriter", "members": [OTHER, SA]},
                                            {"role": "roles/owner", "members": [OTHER]}]
    assert store.writes[0]["etag"] == "e0"


def test_second_run_writes_nothing():
    store = Store([{"role": r, "members": [SA]} for r in ROLES])
    result, _ = run(store)
    assert (result["added"], result["attempts"], store.writes) == ([], 0, [])
    assert store.reads == 1


def test_check_mode_reads_and_writes_nothing():
    store = Store([])
    result, _ = run(store, check=True)
    assert result["added"] == ROLES and store.writes == []
    result, _ = run(Store([{"role": r, "members": [SA]} for r in ROLES]), state="absent", check=True)
    assert result["removed"] == ROLES


@pytest.mark.parametrize("status", [409, 412])
def test_etag_conflict_reruns_the_whole_read_modify_write(status):
    store = Store([], race=2, status=status)
    result, sleeps = run(store)
    # Three writes: two lost to a racer, the third on a fresh read; the racers' bindings stay.
    assert len(store.writes) == 3 and result["attempts"] == 3 and store.reads == 3
    assert [w["etag"] for w in store.writes] == ["e0", "e1", "e2"]
    assert {"role": "roles/viewer", "members": ["user:racer1@example.com"]} in store.policy["bindings"]
    assert {"role": "roles/viewer", "members": ["user:racer0@example.com"]} in store.policy["bindings"]
    assert sorted(iam.member_roles(store.policy)[SA]) == sorted(ROLES)
    assert sleeps == [1.0, 2.0]


def test_etag_conflict_every_time_gives_up_and_says_so():
    store = Store([], race=10)
    with pytest.raises(iam.PolicyConflictError, match="3 times in a row"):
        run(store, attempts=3)
    assert SA not in iam.member_roles(store.policy)


def test_a_member_iam_does_not_know_yet_is_waited_for_then_refused():
    store = Store([], unknown=2)
    result, sleeps = run(store)
    assert result["added"] == ROLES and sleeps == [1.0, 2.0]
    store = Store([], unknown=100)
    with pytest.raises(GceApiError, match="does not exist"):
        run(store, timeout=10)


def test_revoking_removes_only_this_member_from_these_roles():
    store = Store([{"role": "roles/logging.logWriter", "members": [OTHER, SA]},
                   {"role": "roles/monitoring.metricWriter", "members": [SA]},
                   {"role": "roles/storage.admin", "members": [SA]},
                   CONDITIONAL])
    result, _ = run(store, state="absent")
    assert result["removed"] == ROLES
    bindings = store.policy["bindings"]
    # Someone else's membership stays; a role it did not grant stays; a conditional binding (it
    # never adds one) stays; the emptied binding goes.
    assert {"role": "roles/logging.logWriter", "members": [OTHER]} in bindings
    assert {"role": "roles/storage.admin", "members": [SA]} in bindings
    assert CONDITIONAL in bindings
    assert not any(b["role"] == "roles/monitoring.metricWriter" for b in bindings)
    assert result["roles"] == ["roles/storage.admin"]
    # Nothing left of ours: no write.
    again, _ = run(store, state="absent")
    assert again["removed"] == [] and len(store.writes) == 1


def test_revoking_from_a_bucket_that_is_gone_changes_nothing_but_granting_fails():
    class Gone(Store):
        def read(self):
            raise GceApiError(404, "notFound", "The specified bucket does not exist.")

    result, _ = run(Gone([]), state="absent")
    assert (result["removed"], result["roles"]) == ([], [])
    with pytest.raises(GceApiError, match="does not exist"):
        run(Gone([]))


def test_a_conditional_binding_is_not_what_present_means():
    store = Store([CONDITIONAL])
    result, _ = run(store, roles=["roles/logging.logWriter"])
    assert result["added"] == ["roles/logging.logWriter"]
    assert CONDITIONAL in store.policy["bindings"] and store.writes[0]["version"] == 3


def test_bucket_and_project_urls():
    calls = []

    class Client:
        def post(self, url, body=None):
            calls.append(("POST", url, body))
            return {}

        def get(self, url, params=None):
            calls.append(("GET", url, params))
            return {}

        def request(self, method, url, body=None):
            calls.append((method, url, body))
            return {}

    iam.PolicyStore(Client(), "project", "p").read()
    iam.PolicyStore(Client(), "project", "p").write({"etag": "x"})
    iam.PolicyStore(Client(), "bucket", "b").read()
    iam.PolicyStore(Client(), "bucket", "b").write({"etag": "x"})
    assert calls == [
        ("POST", "https://cloudresourcemanager.googleapis.com/v1/projects/p:getIamPolicy",
         {"options": {"requestedPolicyVersion": 3}}),
        ("POST", "https://cloudresourcemanager.googleapis.com/v1/projects/p:setIamPolicy", {"policy": {"etag": "x"}}),
        ("GET", "https://storage.googleapis.com/storage/v1/b/b/iam", {"optionsRequestedPolicyVersion": 3}),
        ("PUT", "https://storage.googleapis.com/storage/v1/b/b/iam", {"etag": "x"}),
    ]
