"""The project's filter plugins stay cheap to load.

Ansible runs each task in a new worker process, and the first filter a task's templates use
makes that worker load every filter file on the filter path, the project's included. A filter
file that imports requests or google-auth at its top (about 0.2 s on a two-core machine) then
costs every task that uses any filter, `| int` or `| length` alike: that was a third of a
converged `site.yml` rerun. Heavy imports belong inside the filters that need them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Loads the filter plugins the way a task's worker does (the first filter a template names),
# and reports what that imported.
PROBE = r"""
import json, sys
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader()
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
before = set(sys.modules)
value = Templar(loader=DataLoader()).template(trust_as_template("{{ '8080' | int }}"))
from ansible.plugins.loader import filter_loader
files = sorted({str(p) for p in filter_loader.all(path_only=True)})
print(json.dumps({"value": value, "files": files, "new": sorted(set(sys.modules) - before)}))
"""

HEAVY = ("requests", "google.auth", "google.oauth2", "cryptography", "urllib3")


def test_loading_the_filters_imports_no_http_or_auth_library():
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["value"] == 8080
    # The probe did load the project's filter files, not only Ansible's own.
    project = {Path(f).name for f in report["files"] if Path(f).parent == REPO / "plugins" / "filter"}
    assert {"gce_failover.py", "nvidia_driver.py"} <= project, report["files"]
    heavy = [m for m in report["new"] if m.split(".")[0] in HEAVY or m.startswith(HEAVY)]
    assert not heavy, "loading the filter plugins imported %s" % heavy
