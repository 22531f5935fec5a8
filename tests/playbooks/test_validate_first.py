"""site.yml checks the inputs of the VM's roles on the controller before anything is created.

A bad `jupyter_port` or a pull from s3:// used to be found by the configure play, on a VM that
already existed and billed. playbooks/validate.yml, imported first by site.yml, runs each
configure role's argument_specs and its own tasks/validate.yml on localhost: a refusal names the
variable and the sandbox sees no request at all.
"""

from pathlib import Path

import pytest
import yaml

from conftest import flat, REPO, run_playbook


# (extra vars, texts the refusal must contain)
BAD_INPUTS = [
    # jupyter's own check: the unprivileged server cannot bind a port below 1024 (22 is SSH's).
    ({"jupyter_port": 22}, ["jupyter_port must be between 1024 and 65535 (got 22)"]),
    # gcs_pull's own check, run because there is a pull (configure.yml runs the role only then).
    ({"gcs_pull_pulls": [{"src": "s3://bucket/x", "dest": "/home/jupyter/data/x"}]},
     ["gcs_pull_pulls[0].src must be gs://BUCKET[/PREFIX]", "got src=s3://bucket/x"]),
    # idle_autostop's own check: the check interval must fit in the idle window.
    ({"idle_autostop_idle_minutes": 1, "idle_autostop_check_interval_seconds": 300},
     ["idle_autostop_check_interval_seconds between 5 and the idle window"]),
    # nvidia_driver's own check, new with the controller-side validation.
    ({"nvidia_driver_branch": "latest"}, ["nvidia_driver_branch must be a driver branch number", '"latest"']),
    # argument_specs (choices, types), every role's errors in one refusal.
    ({"trash_cleanup_older_than_days": "a month", "idle_autostop_action": "halt"},
     ["trash_cleanup: argument 'trash_cleanup_older_than_days' is of type str",
      "idle_autostop: value of idle_autostop_action must be one of: poweroff, command, log, got: halt",
      "roles/trash_cleanup/README.md"]),
]


@pytest.mark.parametrize("extra_vars,texts", BAD_INPUTS, ids=[",".join(sorted(b[0])) for b in BAD_INPUTS])
def test_bad_role_input_stops_site_before_any_api_call(sandbox, extra_vars, texts):
    result = run_playbook("site.yml", sandbox, extra_vars=extra_vars)
    assert result.rc != 0, result
    for text in texts:
        assert text in flat(result), (text, result)
    assert sandbox.requests(mutating=True) == [], "something was enabled or created"
    assert sandbox.requests() == [], "validation is local: no API call at all"
    assert "PLAY [Provision the GPU VM]" not in result.stdout, result


def test_inputs_are_checked_whatever_the_tags(sandbox):
    result = run_playbook("site.yml", sandbox, extra_vars={"jupyter_port": 22}, tags="provision")
    assert result.rc != 0, result
    assert "jupyter_port must be between 1024 and 65535" in flat(result), result
    assert sandbox.requests() == []


@pytest.mark.parametrize("pulls", [[], [{"src": "gs://my-bucket/datasets/cifar10", "dest": "/home/jupyter/data/cifar10",
                                         "owner": "jupyter"}]], ids=["no-pulls", "one-pull"])
def test_good_inputs_pass_validation_without_api_calls(sandbox, pulls):
    result = run_playbook("playbooks/validate.yml", sandbox, extra_vars={"gcs_pull_pulls": pulls})
    assert result.rc == 0, result
    assert result.changed == 0, result
    # gcs_pull is checked exactly when configure.yml runs it: when there is something to pull.
    assert ("(item=gcs_pull)" in result.stdout) == bool(pulls), result
    assert ("Validate | Check every pull's source URL" in result.stdout) == bool(pulls), result
    assert sandbox.requests() == []


def _configure_roles():
    play = yaml.safe_load((REPO / "playbooks" / "configure.yml").read_text())[0]
    return [(r["role"], r.get("when")) for r in play["roles"]]


def test_validate_covers_every_configure_role_in_order_with_its_condition():
    """A role added to configure.yml must be added to validate.yml too (its validate.yml imported)."""
    play = yaml.safe_load((REPO / "playbooks" / "validate.yml").read_text())[0]
    imported = [(t["ansible.builtin.import_role"]["name"], t.get("when")) for t in play["tasks"]
                if "ansible.builtin.import_role" in t]
    assert imported == _configure_roles()
    for role, _ in imported:
        assert (REPO / "roles" / role / "tasks" / "validate.yml").is_file(), role
        main = yaml.safe_load((REPO / "roles" / role / "tasks" / "main.yml").read_text())
        assert main[0].get("ansible.builtin.import_tasks") == "validate.yml", \
            f"{role}: tasks/main.yml must run the same checks first"
    # The argument_specs loop names the same roles, with the same condition on gcs_pull.
    expression = " ".join(play["vars"]["validate_roles"].split())
    for role, when in imported:
        assert f"'{role}'" in expression, role
        if when:
            assert f"['{role}'] if {when} else []" in expression, (role, when)


def test_site_validates_first():
    site = yaml.safe_load(Path(REPO / "site.yml").read_text())
    assert site[0]["ansible.builtin.import_playbook"] == "playbooks/validate.yml"
