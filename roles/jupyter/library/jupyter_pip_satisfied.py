#!/usr/bin/python
"""Tell, without running pip, which requirements a virtualenv does not satisfy yet."""

from __future__ import annotations

DOCUMENTATION = r"""
module: jupyter_pip_satisfied
short_description: Check pip requirements against virtualenvs without running pip
description:
  - For each virtualenv, reads the installed distributions' metadata and returns the
    requirements they do not satisfy (missing, or a version outside the specifier).
  - A converged host answers in a fraction of a second where the pip module spends seconds
    starting pip twice; the pip task then runs only for virtualenvs that need it.
  - Needs C(packaging) for the interpreter Ansible uses on the host; without it, or for a
    requirement it cannot parse (URLs, VCS), everything is reported unsatisfied, so pip decides.
  - Read-only; supports check mode.
options:
  venvs:
    description: Map of virtualenv path to its list of pip requirement strings.
    type: dict
    required: true
  kernels:
    description:
      - Kernel virtualenvs as the jupyter role lists them (C(venv), C(packages)); each must
        satisfy I(kernel_requirements) plus its own C(packages).
    type: list
    elements: dict
    default: []
  kernel_requirements:
    description: Requirements every kernel virtualenv needs (ipykernel).
    type: list
    elements: str
    default: []
author: gpu-jupyter
"""

EXAMPLES = r"""
- name: Check what pip would have to install
  jupyter_pip_satisfied:
    venvs:
      /opt/jupyter/venv: ["jupyterlab>=4.2,<5"]
  register: pending
"""

RETURN = r"""
unsatisfied:
  description: Map of virtualenv path to the requirements it does not satisfy (empty list when all are).
  type: dict
  returned: always
"""

import glob
import os

from ansible.module_utils.basic import AnsibleModule

try:
    from importlib import metadata
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    HAS_PACKAGING = True
except ImportError:  # pragma: no cover - depends on the host
    HAS_PACKAGING = False


def installed_versions(venv: str) -> dict[str, str]:
    """Canonical name -> version of what is installed in venv's site-packages."""
    paths = glob.glob(os.path.join(venv, "lib", "python3*", "site-packages"))
    found = {}
    for dist in metadata.distributions(path=paths):
        name = dist.metadata["Name"]
        if name:
            found[canonicalize_name(name)] = dist.version
    return found


def unsatisfied(venv: str, requirements: list[str]) -> list[str]:
    if not HAS_PACKAGING or not os.path.isfile(os.path.join(venv, "bin", "python")):
        return list(requirements)
    installed = installed_versions(venv)
    pending = []
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            pending.append(text)
            continue
        if req.url:
            pending.append(text)
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue  # not meant for this interpreter
        version = installed.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            pending.append(text)
    return pending


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "venvs": {"type": "dict", "required": True},
            "kernels": {"type": "list", "elements": "dict", "default": []},
            "kernel_requirements": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    wanted = {venv: list(reqs or []) for venv, reqs in module.params["venvs"].items()}
    for kernel in module.params["kernels"]:
        wanted[kernel["venv"]] = module.params["kernel_requirements"] + list(kernel.get("packages") or [])
    result = {venv: unsatisfied(venv, reqs) for venv, reqs in wanted.items()}
    module.exit_json(changed=False, unsatisfied=result)


if __name__ == "__main__":
    main()
