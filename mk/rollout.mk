# Rollout targets: wheelhouse, units, Ansible, Vagrant, and the nspawn lab.
# Included from the Makefile (`include mk/rollout.mk`), which defines VENV, PY and
# $(VENV)/.installed (the venv with logferry, ansible-core and ansible-lint).

WHEELHOUSE ?= wheelhouse
LAB_PY     := $(PY) lab/lab.py
ANSIBLE_ENV := ANSIBLE_CONFIG=ansible/ansible.cfg PATH="$(CURDIR)/$(VENV)/bin:$$PATH"

.PHONY: wheelhouse units-check ansible-check vagrant-validate rollout-check lab lab-down lab-status lab-check

# SOURCE_DATE_EPOCH: the same source gives a byte-identical logferry wheel, so a rebuilt
# wheelhouse without code changes does not make Ansible reinstall and restart the daemons.
wheelhouse: $(VENV)/.installed ## build logferry and its runtime dependencies as wheels in wheelhouse/ (offline installs)
	rm -rf $(WHEELHOUSE)
	SOURCE_DATE_EPOCH=315532800 $(PY) -m pip wheel --quiet --disable-pip-version-check '.[console]' -w $(WHEELHOUSE)/
	@ls $(WHEELHOUSE) | sed 's/^/  /'

units-check: $(VENV)/.installed ## systemd-analyze verify + security exposure of systemd/*.service
	$(PY) lab/check_units.py

ansible-check: $(VENV)/.installed ## ansible-playbook --syntax-check and ansible-lint on ansible/
	cd ansible && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" ansible-playbook --syntax-check -i inventory/example.ini site.yml
	cd ansible && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" ansible-lint --offline
	$(PY) lab/validate_inventory.py ansible/inventory

vagrant-validate: ## vagrant validate -p (the Vagrantfile, without booting; installs Debian's vagrant if missing)
	@command -v vagrant >/dev/null || { apt-get install -y -q vagrant >/dev/null; }
	VAGRANT_DOTFILE_PATH=$(CURDIR)/.lab/vagrant vagrant validate -p   # its scratch dir in .lab/, not .vagrant/
	VAGRANT_DOTFILE_PATH=$(CURDIR)/.lab/vagrant VAGRANT_DEFAULT_PROVIDER=docker vagrant validate   # the docker-provider variant

rollout-check: units-check ansible-check vagrant-validate ## all static checks of the rollout

lab: $(VENV)/.installed wheelhouse ## boot 3 systemd hosts (nspawn) + the stack, run site.yml twice, check end to end
	$(LAB_PY) up

lab-down: $(VENV)/.installed ## power the lab off: hosts, overlays, stack, bridge; no process left
	$(LAB_PY) down

lab-status: $(VENV)/.installed ## the lab's hosts, their units, and the stack
	$(LAB_PY) status

lab-check: $(VENV)/.installed ## run the lab's end-to-end checks again (lab up)
	$(LAB_PY) check
