"""What the sandbox honours of a request, and a 501 for everything else GCE would act on.

GCE accepts many fields the sandbox cannot honour (customer-supplied encryption keys, local SSDs,
alias IP ranges, instance templates, ...). Accepting such a request and dropping the field would
make a rehearsal pass that GCE may fail, or behave differently; refusing it with a GCE-looking
error would send users hunting for a problem GCE does not have. So each mutating handler names
the fields it honours, and any other field with a value answers 501 naming the field and the
method: the one answer that cannot be mistaken for GCE's.
"""

from __future__ import annotations

from typing import Any, Callable

from .. import catalog
from ..errors import ApiError

# The whole subtree is honoured (stored, echoed back and acted on as GCE would, or harmless).
ANY = True
# Output-only fields a client may send back from a GET: GCE ignores them on input.
OUTPUT_ONLY = frozenset({"kind", "id", "creationTimestamp", "selfLink", "selfLinkWithId", "status",
                         "statusMessage", "zone", "region", "cpuPlatform", "lastStartTimestamp",
                         "lastStopTimestamp", "lastSuspendedTimestamp", "users", "satisfiesPzi", "satisfiesPzs"})

# Disk types GCE offers that the sandbox's catalog does not (their rules, sizes and quotas differ).
UNEMULATED_DISK_TYPES = ("local-ssd", "pd-extreme", "hyperdisk-balanced", "hyperdisk-balanced-high-availability",
                         "hyperdisk-extreme", "hyperdisk-ml", "hyperdisk-throughput")
# GPUs GCE offers that the catalog lacks (a reference to one is not GCE's "not found").
UNEMULATED_ACCELERATORS = ("nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-h100-mega-80gb", "nvidia-h200-141gb",
                           "nvidia-b200", "nvidia-gb200", "nvidia-rtx-pro-6000", "nvidia-tesla-t4-vws",
                           "nvidia-tesla-p4-vws", "nvidia-tesla-p100-vws", "nvidia-l4-vws")
# Machine type series the catalog holds in full ("n1-standard", "e2" for e2-medium, ...): an
# unknown name in one of them is GCE's "does not exist"; in any other series, not emulated.
CATALOG_SERIES = frozenset(name.rsplit("-", 1)[0] for name in catalog.MACHINE_TYPES)


def not_emulated(what: str, method: str) -> ApiError:
    return ApiError(501, f"{what} is not emulated by the sandbox ({method}): GCE would act on it and the sandbox "
                         "cannot, so the request is refused instead of being half done.", "notImplemented")


def check_fields(value: Any, spec: Any, path: str, method: str) -> None:
    """Refuse (501) any field of `value` with a meaningful value that `spec` does not name.

    spec: ANY; a dict of field -> spec; a one-element list [spec] for arrays; or a function
    (value, path, method) that raises for values the sandbox does not honour."""
    if spec is ANY or not _meaningful(value):
        return
    if callable(spec):
        spec(value, path, method)
        return
    if isinstance(spec, list):
        for i, item in enumerate(value if isinstance(value, list) else []):
            check_fields(item, spec[0], f"{path}[{i}]", method)
        return
    if isinstance(value, dict):
        for key, sub in value.items():
            where = f"{path}.{key}" if path else key
            if key in spec:
                check_fields(sub, spec[key], where, method)
            elif key not in OUTPUT_ONLY and _meaningful(sub):
                raise not_emulated(f"Field '{where}'", method)


def check_query(query: dict, unhonoured: tuple[str, ...], method: str) -> None:
    for key in unhonoured:
        if query.get(key):
            raise not_emulated(f"Query parameter '{key}'", method)


def _meaningful(value: Any) -> bool:
    """False for what equals GCE's default for an absent field: null, false, "", [], {}."""
    return value not in (None, False, "", [], {})


def only(*allowed: str) -> Callable[[Any, str, str], None]:
    """A field honoured only with these values (e.g. stackType IPV4_ONLY)."""
    def check(value: Any, path: str, method: str) -> None:
        if value not in allowed:
            raise not_emulated(f"Field '{path}' = {value!r}", method)
    return check


def disk_type_ref(value: Any, path: str, method: str) -> None:
    name = str(value).rsplit("/", 1)[-1]
    if name in UNEMULATED_DISK_TYPES:
        raise not_emulated(f"Disk type '{name}' ({path})", method)


SCHEDULING = {"provisioningModel": ANY, "preemptible": ANY, "automaticRestart": ANY, "onHostMaintenance": ANY,
              "instanceTerminationAction": ANY, "maxRunDuration": ANY, "terminationTime": ANY}
GUEST_ACCELERATORS = [{"acceleratorType": ANY, "acceleratorCount": ANY}]
ATTACHED_DISK = {
    "boot": ANY, "autoDelete": ANY, "mode": ANY, "source": ANY, "deviceName": ANY, "interface": ANY,
    "index": ANY, "diskSizeGb": ANY,
    # Local SSDs are SCRATCH disks: none in the sandbox.
    "type": only("PERSISTENT"),
    "initializeParams": {"diskName": ANY, "sourceImage": ANY, "diskSizeGb": ANY, "labels": ANY,
                         "diskType": disk_type_ref},
}
NETWORK_INTERFACE = {
    "network": ANY, "subnetwork": ANY, "nicType": ANY, "networkIP": ANY, "name": ANY, "fingerprint": ANY,
    "stackType": only("IPV4_ONLY"),
    "accessConfigs": [{"type": ANY, "name": ANY, "networkTier": ANY, "natIP": ANY}],
}
INSTANCE = {
    "name": ANY, "description": ANY, "machineType": ANY, "labels": ANY, "labelFingerprint": ANY,
    "fingerprint": ANY, "tags": {"items": ANY, "fingerprint": ANY}, "guestAccelerators": GUEST_ACCELERATORS,
    "scheduling": SCHEDULING, "disks": [ATTACHED_DISK], "networkInterfaces": [NETWORK_INTERFACE],
    "serviceAccounts": [{"email": ANY, "scopes": ANY}], "metadata": {"items": ANY, "fingerprint": ANY},
    "canIpForward": ANY, "deletionProtection": ANY, "startRestricted": ANY,
    # Stored as sent and shown by get: what the guest sees of them is the image's business.
    "shieldedInstanceConfig": ANY, "hostname": ANY, "minCpuPlatform": ANY, "confidentialInstanceConfig": ANY,
    "advancedMachineFeatures": ANY, "reservationAffinity": ANY, "displayDevice": ANY, "resourcePolicies": ANY,
    "params": ANY,
}
DISK = {"name": ANY, "description": ANY, "sizeGb": ANY, "sourceImage": ANY, "labels": ANY, "labelFingerprint": ANY,
        "type": disk_type_ref}
FIREWALL = {key: ANY for key in ("name", "description", "network", "priority", "direction", "logConfig", "disabled",
                                 "allowed", "denied", "sourceRanges", "destinationRanges", "sourceTags", "targetTags",
                                 "sourceServiceAccounts", "targetServiceAccounts")}
METADATA = {"items": ANY, "fingerprint": ANY}
LABELS = {"labels": ANY, "labelFingerprint": ANY}
