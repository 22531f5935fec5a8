#!/usr/bin/python
"""Test helper: report the given facts as the host's own (ansible_facts), nothing else.

Lets tests/unit/test_nvidia_render.py run the nvidia_driver role in check mode as if the host were
Ubuntu 24.04 or Debian 13: a module's returned ansible_facts are merged into the host's facts,
which set_fact or play vars cannot do.
"""

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: nvidia_driver_fake_facts
short_description: Report the given facts as the host's facts (tests only)
options:
  facts:
    description: Facts to report.
    type: dict
    required: true
"""


def main():
    module = AnsibleModule(argument_spec={"facts": {"type": "dict", "required": True}}, supports_check_mode=True)
    module.exit_json(changed=False, ansible_facts=module.params["facts"])


if __name__ == "__main__":
    main()
