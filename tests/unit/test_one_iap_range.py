"""IAP's TCP forwarding range is one fact. Python holds it once (gce_preflight_checks.IAP_RANGE);
YAML has to spell it where a default or an argument spec is read without Python (group_vars,
role defaults and specs, gce_vm's vars). Every such copy must be that same range, so a change
that misses one fails here instead of opening SSH to the wrong sources."""

import importlib
import ipaddress
import re
from pathlib import Path

import ansible.module_utils

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "plugins" / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(ROOT / "plugins" / "module_utils"))
IAP_RANGE = importlib.import_module("ansible.module_utils.gce_preflight_checks").IAP_RANGE
# Google's 35.235.0.0/16 block: IAP's range and anything that looks like a mistyped copy of it.
NEAR_IAP = re.compile(r"\b35\.235\.\d{1,3}\.\d{1,3}/\d{1,2}\b")
SOURCES = ("group_vars", "roles", "playbooks", "inventories", "plugins", "site.yml")


def copies() -> list[tuple[str, int, str]]:
    found = []
    for top in SOURCES:
        path = ROOT / top
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            if file.suffix not in {".yml", ".yaml", ".j2", ".py", ".md"}:
                continue
            for lineno, line in enumerate(file.read_text().splitlines(), 1):
                found += [(str(file.relative_to(ROOT)), lineno, m) for m in NEAR_IAP.findall(line)]
    return found


def test_iap_range_is_a_network_address():
    network = ipaddress.ip_network(IAP_RANGE)
    assert str(network) == IAP_RANGE


def test_every_copy_of_iap_range_is_the_same_range():
    found = copies()
    # group_vars, gce_vm's defaults, spec and vars, gce_lifecycle's defaults and specs at least.
    assert len({f for f, _, _ in found}) >= 6, found
    wrong = [(f, n, m) for f, n, m in found if m != IAP_RANGE]
    assert wrong == [], f"these are not IAP's range {IAP_RANGE}: {wrong}"
