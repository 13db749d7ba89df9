# nltrace: the user's verbs.
#   make install   everything on a fresh Debian 12 machine (root)
#   make demo      nltrace flow on real traffic (inside the test VM here)
#   make test      every test: host tests, then the real-kernel tests in one VM boot
#   make vm CMD=.. any command inside the test VM
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := .cache/installed
APT_PACKAGES := python3-venv python3-bpfcc bpfcc-tools bpftrace dwarves iproute2 strace \
	qemu-system-x86 linux-image-amd64 linux-headers-amd64

.PHONY: install demo test test-host test-vm vm

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml Makefile
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES)
	test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q -e . virtme-ng pytest
	mkdir -p .cache && touch $@

demo: install
	tools/vm tools/demo

test: test-host test-vm

test-host: install
	$(PY) -m pytest -p no:cacheprovider tests/host

test-vm: install
	tools/vm $(PY) -m pytest -p no:cacheprovider -v tests/vm

vm: install
	tools/vm bash -c '$(CMD)'
