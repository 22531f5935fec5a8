# Two commands matter:
#   make up     create (or converge) the GPU JupyterLab VM: the local GCE sandbox by default,
#               a real project when GCP_PROJECT is set (see README)
#   make test   the whole test suite: lint, unit, sandbox, playbook and Molecule role tests
# Both install what they need first (scripts/bootstrap).

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
SANDBOX_STATE ?= .sandbox
# Parallel workers: the Molecule scenarios and sandbox playbooks spend most of their time waiting.
# Each worker takes whole modules (and single Molecule scenarios), longest first (tests/conftest.py).
# The slowest tests are listed at the end, to keep the weights in tests/conftest.py honest.
PYTEST_ARGS ?= -n 3 --dist loadscope --durations=30
PLAYBOOK_ARGS ?=

ifdef GCP_PROJECT
INVENTORY ?= inventories/gcp
else
INVENTORY ?= inventories/sandbox
endif

.PHONY: up deps test-deps sandbox-deps sandbox sandbox-stop down status stop start reconfigure sweep run test test-fast lint bench clean

deps:
	@scripts/bootstrap

test-deps:
	@scripts/bootstrap --tests

sandbox-deps:
	@scripts/bootstrap --sandbox

# Start the local Compute Engine sandbox (no-op when it is already running). Its VMs are podman
# containers with systemd and sshd, so `make up` configures them as it would a real VM.
sandbox: sandbox-deps
	@$(BIN)/python -m gce_sandbox start --state-dir $(SANDBOX_STATE) --vms podman

# Stops the sandbox; its VMs' containers stop too and boot again with the next `make sandbox`.
sandbox-stop:
	@if [[ -x $(BIN)/python ]]; then $(BIN)/python -m gce_sandbox stop --state-dir $(SANDBOX_STATE); fi

ifdef GCP_PROJECT
up: deps
else
up: sandbox
endif
	$(BIN)/ansible-playbook -i $(INVENTORY) site.yml $(PLAYBOOK_ARGS)

status stop start reconfigure sweep: deps
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/$@.yml $(PLAYBOOK_ARGS)

down: deps
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/destroy.yml $(PLAYBOOK_ARGS)

# A script on every node of the cluster (gce_cluster_engines) at once, under torchrun, with each
# node's output prefixed by its name: make run SCRIPT=train.py ARGS="--epochs 3" (RUN_ARGS=--no-torch
# runs it plainly).
run: deps
	@[[ -n "$(SCRIPT)" ]] || { echo "make run SCRIPT=path/to/script.py [ARGS=...] [RUN_ARGS=--no-torch]"; exit 2; }
	$(BIN)/python scripts/cluster-run $(RUN_ARGS) $(SCRIPT) $(ARGS)

test: test-deps
	$(BIN)/pytest $(PYTEST_ARGS)

# Everything but the Molecule scenarios and the journeys: about half of `make test`'s time (the
# sandbox playbook tests remain), some 20 minutes on 2 cores.
test-fast: test-deps
	$(BIN)/pytest -m "not molecule and not journey" $(PYTEST_ARGS)

lint: deps
	$(BIN)/pytest tests/test_lint.py

bench: test-deps
	@for b in bench/*; do [[ -x $$b ]] && { echo "== $$b"; PATH=$(CURDIR)/$(BIN):$$PATH $$b || exit 1; }; done

# Forgets the sandbox: its server, its VMs' containers and its state.
clean:
	@if [[ -x $(BIN)/python ]]; then $(BIN)/python -m gce_sandbox stop --purge --state-dir $(SANDBOX_STATE); fi
	rm -rf $(SANDBOX_STATE) artifacts
