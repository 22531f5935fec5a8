"""How long operations stay RUNNING: `instant` (the default: DONE at the next request, for unit
tests) or `realistic` (rehearsals: every wait in a client is exercised, as on GCE).

The realistic figures are the order of magnitude GCE's operations take, as public Terraform and
gcloud logs show them ("Still creating... [10s elapsed]" for an instance, firewall rules in
5-15 s, a stop waiting for the guest's shutdown); they are not measurements and GCE varies
widely. `scale` multiplies them (0.1 for a quick rehearsal, 3 for a slow day).
"""

from __future__ import annotations

from typing import Any

from ..errors import bad_request

PROFILES = ("instant", "realistic")

# (collection of the target, operationType) -> seconds RUNNING; (collection, None) is the default
# for that collection's other methods.
REALISTIC_SECONDS: dict[tuple[str, str | None], float] = {
    ("instances", "insert"): 12.0,
    ("instances", "start"): 10.0,
    ("instances", "stop"): 20.0,
    ("instances", "delete"): 25.0,
    ("instances", "setMachineType"): 3.0,
    ("instances", "setMachineResources"): 3.0,
    ("instances", None): 2.0,
    ("disks", "insert"): 3.0,
    ("disks", "delete"): 4.0,
    ("disks", None): 2.0,
    ("firewalls", None): 8.0,
    ("projects", None): 5.0,
}


def settings(profile: Any = "instant", scale: Any = 1.0) -> dict:
    """Validated timing settings, as kept in the state under "timing"."""
    if profile not in PROFILES:
        raise bad_request(f"Unknown timing profile '{profile}'; known: {', '.join(PROFILES)}")
    try:
        scale = float(scale if scale not in (None, "") else 1.0)
    except (TypeError, ValueError):
        raise bad_request(f"Timing scale must be a number, not '{scale}'") from None
    if not 0 <= scale <= 100:
        raise bad_request("Timing scale must be between 0 and 100")
    return {"profile": profile, "scale": scale}


def duration(timing: dict | None, op_type: str, target_link: str) -> float:
    """Seconds an operation of this type on this target stays RUNNING."""
    if not timing or timing.get("profile") != "realistic":
        return 0.0
    parts = target_link.rstrip("/").split("/")
    collection = parts[-2] if len(parts) >= 2 else ""
    if collection.startswith("projects") or op_type.startswith("compute.projects"):
        collection = "projects"
    seconds = REALISTIC_SECONDS.get((collection, op_type), REALISTIC_SECONDS.get((collection, None), 2.0))
    return seconds * float(timing.get("scale", 1.0))
