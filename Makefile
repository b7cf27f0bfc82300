# `make test` builds the virtualenv, installs Tenet with its test dependencies and runs the whole suite.
# `make demo` runs Tenet on two emulated nodes with real pods and packets (root); `make demo-down` removes it
# (both keep their state in TENET_DEMO_STATE, default /var/lib/tenet-demo: give demo-down the demo's).
VENV ?= .venv
PY := $(VENV)/bin/python
# Debian's interpreter: the suite and the tools run on the system Python the packages target.
SYSTEM_PYTHON ?= /usr/bin/python3

.PHONY: venv test lint demo demo-down offline-demo bench cni-plugin clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: venv lint
	$(PY) -m pytest

demo: venv
	$(PY) -m lab.demo

demo-down: venv
	$(PY) -m lab.demo --down

offline-demo: venv
	$(VENV)/bin/tenetctl check examples/cluster.yaml
	$(VENV)/bin/tenetctl compile examples/cluster.yaml --node node1
	$(VENV)/bin/tenetctl trace examples/cluster.yaml --src b1 --dst b2 --proto tcp --dport 80
	$(VENV)/bin/tenetctl trace examples/cluster.yaml --src b1 --dst r1

# The compiled CNI plugin (cni/plugin.c), as `tenet-agent install-cni` builds it into the CNI bin directory.
cni-plugin: venv
	$(PY) -c 'import sys; from cni.install import build; build(sys.argv[1], python="$(SYSTEM_PYTHON)")' build/tenet

bench: venv
	$(PY) -m bench.compile --nodes 100 --tenants 10 --networks 100 --endpoints 5000 --json

clean:
	rm -rf $(VENV) build *.egg-info
