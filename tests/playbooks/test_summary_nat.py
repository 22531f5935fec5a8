"""The summary's cost lines: a VM without an external address also bills its Cloud NAT, priced from
prices.yml; one that does not use NAT shows no such line."""

from conftest import run_playbook


def test_the_summary_prices_the_cloud_nat_of_a_vm_that_uses_it(sandbox):
    assert run_playbook("playbooks/provision.yml", sandbox).rc == 0
    summary = run_playbook("playbooks/summary.yml", sandbox)
    assert summary.rc == 0, summary
    # $0.0014 per VM + $0.005 for the NAT address, per hour (the callback wraps the rest of the line).
    assert "Cloud NAT   +~$0.0064/hour while it runs ($0.0014 for the VM + $0.005 for the NAT" in summary.stdout
    without = run_playbook("playbooks/summary.yml", sandbox, extra_vars={"gce_vm_cloud_nat": False})
    assert without.rc == 0, without
    assert "Cloud NAT   " not in without.stdout
