# The card's other two entry points, run for real: the integration suite on containers
# (testcontainers on a Docker engine) and `vagrant up` of the lab (Vagrant's docker provider).
# Included from the Makefile, which defines VENV, PY and $(VENV)/.installed.

.PHONY: docker-images integration-docker docker-down vagrant-box vagrant-lab vagrant-lab-down vagrant-lab-check

docker-images: $(VENV)/.installed ## build (or pull) the images of the Docker-backed suite; starts dockerd if none answers (root)
	$(PY) -m integration.docker images

integration-docker: $(VENV)/.installed $(VENV)/.browser $(VENV)/.nginx ## the integration suite on containers: 3 etcd, ZooKeeper + Kafka, ES (LOGFERRY_STACK=docker)
	LOGFERRY_STACK=docker $(PY) -m pytest integration/ -v --durations=15 $(PYTEST_ARGS)

docker-down: $(VENV)/.installed ## remove every container and network a Docker-backed test session left behind
	$(PY) -m integration.docker down-all

$(VENV)/.vagrant:
	@command -v vagrant >/dev/null || { echo "installing Debian's vagrant (apt-get)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q vagrant >/dev/null; }
	@touch $@

vagrant-box: $(VENV)/.installed $(VENV)/.vagrant ## the lab's box: a systemd + ssh Debian 12 image for Vagrant's docker provider (cached)
	$(PY) lab/vagrant_box.py

vagrant-lab: $(VENV)/.installed $(VENV)/.vagrant wheelhouse ## vagrant up (docker provider) + site.yml, then end-to-end checks and a second provision
	$(PY) lab/vagrant_lab.py up

vagrant-lab-check: $(VENV)/.installed ## the Vagrant lab's checks again (lab up)
	$(PY) lab/vagrant_lab.py check

vagrant-lab-down: $(VENV)/.installed ## vagrant destroy -f, and the containers and networks of the Vagrant lab
	$(PY) lab/vagrant_lab.py down
