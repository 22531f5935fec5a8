"""gce_cloud_nat's plan: create, add to, remove from or delete the router, and nothing when it is as wanted."""

import importlib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ansible.module_utils  # noqa: E402

if os.path.join(ROOT, "plugins", "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(os.path.join(ROOT, "plugins", "module_utils"))
sys.path.insert(0, os.path.join(ROOT, "plugins", "modules"))

nat = importlib.import_module("gce_cloud_nat")

P = {"router": "gpu-jupyter-router", "nat": "gpu-jupyter-nat", "network_link": "projects/p/global/networks/default"}
OURS = nat.nat_config("gpu-jupyter-nat")
THEIRS = nat.nat_config("their-nat")


def plan(router, state="present"):
    return nat.plan(router, dict(P, state=state))


def test_present():
    action, method, body = plan(None)
    assert (action, method) == ("created", "POST")
    assert body["nats"] == [OURS] and body["network"] == P["network_link"]
    assert plan({"nats": [OURS]}) == ("unchanged", None, None)
    assert plan({"nats": [THEIRS]}) == ("added", "PATCH", {"nats": [THEIRS, OURS]})


def test_absent_keeps_what_others_put_on_the_router():
    assert plan(None, "absent") == ("unchanged", None, None)
    assert plan({"nats": [THEIRS]}, "absent") == ("unchanged", None, None)
    assert plan({"nats": [THEIRS, OURS]}, "absent") == ("removed", "PATCH", {"nats": [THEIRS]})
    assert plan({"nats": [OURS], "bgpPeers": [{"name": "x"}]}, "absent") == ("removed", "PATCH", {"nats": []})
    assert plan({"nats": [OURS]}, "absent") == ("deleted", "DELETE", None)
