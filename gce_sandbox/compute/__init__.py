"""Compute Engine v1: the resources, rules and operations the sandbox emulates.

One module per resource, so a reader finds one resource in one file:

  common.py             links, names, labels, fingerprints, list paging; the tables in the state
  operations.py         zone/region/global operations: timing, errors, what happens at the end
  quotas.py             quota limits and live usage; capacity faults (ZONE_RESOURCE_POOL_EXHAUSTED)
  catalog_resources.py  zones, regions, machine/accelerator/disk types, images (read-only)
  projects.py           projects.get, setCommonInstanceMetadata
  networks.py           networks and subnetworks (the auto-mode `default` network)
  instances.py          instances: insert, get/list, delete, start, stop, preempt
  instance_updates.py   instances: set* on an existing VM
  scheduling.py         run-time limits (maxRunDuration, terminationTime) and FLEX_START rules
  disks.py              persistent disks
  snapshots.py          snapshots (disks.createSnapshot, snapshots.*), instances.setDiskAutoDelete
  firewalls.py          firewall rules
  routers.py            Cloud Routers and their Cloud NAT configs
  resource_policies.py  compact placement policies and the VMs that use them
  faults.py             faults injected through the admin endpoints

Every handler `h_<collection>__<method>` serves the discovery method id
`compute.<collection>.<method>`; it gets the path parameters, the query and the (already
schema-validated) body and returns (http_status, json_body) or raises ApiError.
"""

from __future__ import annotations

from .catalog_resources import CatalogMixin
from .common import ComputeBase, RetryAfter, check_labels, check_name, now_rfc3339, parse_ref, public
from .disks import DisksMixin
from .faults import Faults
from .firewalls import FirewallsMixin
from .instance_updates import InstanceUpdatesMixin
from .instances import InstancesMixin
from .networks import NetworksMixin
from .operations import OperationsMixin
from .projects import ProjectsMixin
from .quotas import QuotasMixin
from .resource_policies import ResourcePoliciesMixin
from .routers import RoutersMixin
from .scheduling import SchedulingMixin
from .snapshots import SnapshotsMixin

__all__ = ["Compute", "Faults", "RetryAfter", "check_labels", "check_name", "now_rfc3339", "parse_ref",
           "public"]


class Compute(InstancesMixin, InstanceUpdatesMixin, SchedulingMixin, DisksMixin, SnapshotsMixin, FirewallsMixin,
              NetworksMixin, RoutersMixin, ResourcePoliciesMixin, ProjectsMixin, CatalogMixin, QuotasMixin,
              OperationsMixin, ComputeBase):
    """The Compute API of one sandbox project: every resource's handlers over one state dict."""
