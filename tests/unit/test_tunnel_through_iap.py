"""The lifecycle playbooks print the tunnel command with --tunnel-through-iap exactly when gce_vm
reaches the VM through IAP: both derive it from gce_vm_access (or, when empty, from whether IAP's
range is the SSH source), so status/start and the provisioning summary never disagree."""

from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[2]
IAP = "35.235.240.0/20"


def render(expression, variables):
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(trust_as_template(expression))


LIFECYCLE = yaml.safe_load((ROOT / "roles/gce_lifecycle/defaults/main.yml").read_text())
GCE_VM = yaml.safe_load((ROOT / "roles/gce_vm/vars/main.yml").read_text())


@pytest.mark.parametrize("access,ranges", [
    ("", [IAP]), ("", ["203.0.113.0/24"]), ("ssh", [IAP]), ("oslogin", [IAP]),
    ("iap", ["203.0.113.0/24"]), ("iap", [IAP]), ("ssh", ["203.0.113.0/24"]),
])
def test_lifecycle_tunnels_through_iap_when_gce_vm_reaches_the_vm_through_iap(access, ranges):
    variables = {"gce_vm_access": access, "gce_vm_ssh_source_ranges": ranges, "__gce_vm_iap_range": IAP}
    vm_access = render(GCE_VM["__gce_vm_access"], variables).strip()
    through_iap = render(LIFECYCLE["gce_lifecycle_tunnel_through_iap"], variables)
    assert str(through_iap).strip() == str(vm_access == "iap"), (access, ranges, vm_access)
