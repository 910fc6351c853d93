# logferry — every target sets up what it needs (the virtualenv in .venv/, the stack's
# servers and jars) by itself. `make help` lists the targets.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  := $(PY) -m integration.stack
STACK_DIR ?= .stack
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv test unit integration lint stack-up stack-status stack-down demo demo-down clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev,console,docker]'
	@touch $@

venv: $(VENV)/.installed ## create .venv/ with logferry and the test/dev tools

# The console's browser tests drive Debian's chromium through chromium-driver (no browser download).
$(VENV)/.browser:
	@command -v chromedriver >/dev/null || { echo "installing chromium + chromium-driver (apt) for the console's browser tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; }
	@touch $@

# integration/test_parsing.py parses a real nginx's access lines: the test runs /usr/sbin/nginx itself
# on loopback with its own config, so the package's service is not wanted (stopped where systemd runs).
$(VENV)/.nginx:
	@test -x /usr/sbin/nginx || { echo "installing nginx (apt) for the parsing tests (the test runs it on loopback)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null; \
	  if [ -d /run/systemd/system ]; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi; }
	@touch $@

test: $(VENV)/.installed $(VENV)/.browser $(VENV)/.nginx ## all tests: unit (tests/) then integration on a real stack (integration/)
	$(PY) -m pytest tests/ -q $(PYTEST_ARGS)
	$(PY) -m pytest integration/ -v --durations=15 $(PYTEST_ARGS)

unit: $(VENV)/.installed ## fast unit tests only, no servers
	$(PY) -m pytest tests/ -q $(PYTEST_ARGS)

integration: $(VENV)/.installed $(VENV)/.browser $(VENV)/.nginx ## integration tests only (starts its own stack unless LOGFERRY_STACK_DIR names a running one)
	$(PY) -m pytest integration/ -v --durations=15 $(PYTEST_ARGS)

lint: $(VENV)/.installed ## ruff
	$(VENV)/bin/ruff check .

stack-up: $(VENV)/.installed ## start etcd x3, ZooKeeper, Kafka, Elasticsearch in ./.stack (installs what is missing)
	$(STACK) --workdir $(STACK_DIR) up $(STACK_ARGS)

stack-status: $(VENV)/.installed ## show the stack's services and whether each serves
	$(STACK) --workdir $(STACK_DIR) status

stack-down: $(VENV)/.installed ## stop exactly the processes stack-up started
	$(STACK) --workdir $(STACK_DIR) down

demo: $(VENV)/.installed ## the whole chain on this machine: stack, logagent, logtransfer, sample logs, lines found in ES
	$(PY) -m integration.demo up

demo-down: $(VENV)/.installed ## stop the demo's daemons and its stack (exactly what `make demo` started)
	$(PY) -m integration.demo down

clean: ## remove the virtualenv and build droppings (not the download cache)
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache

# Targets kept in their own files (rollout/lab, benchmarks, chaos).
-include mk/*.mk
