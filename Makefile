# One entry point for people and CI. Every target is safe to run again: it does only what is missing.
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
COLLECTION_LINK := .collections/ansible_collections/llmops/ragstack
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PYTHONUNBUFFERED := 1

.PHONY: setup lab lab-down lab-status xinference-venv run test test-quick lint sanity unit integration molecule build docs clean

## setup: create .venv from requirements.txt and link this checkout as the llmops.ragstack collection
setup: $(VENV)/.installed $(COLLECTION_LINK)

$(VENV)/.installed: requirements.txt
	@python3 -m venv $(VENV) || { echo "setup: python3 -m venv failed: install python3-venv (Debian: apt-get install python3-venv)"; exit 1; }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	@touch $@

$(COLLECTION_LINK):
	@mkdir -p $(dir $@)
	ln -sfn ../../.. $@

## lab: Docker engine, Compose v2, local images, the lab hosts of inventories/lab and the lab mirror
lab: setup xinference-venv
	$(PYTHON) lab/lab.py up

lab-down: setup
	$(PYTHON) lab/lab.py down

lab-status: setup
	$(PYTHON) lab/lab.py status

## xinference-venv: the real Xinference server (CPU) the integration tests start, in a venv of its own
xinference-venv:
	python3 lab/xinference/setup_venv.py

## run: the main job on the local lab (its secrets are vaulted with a lab-only password)
run: lab
	ansible-playbook -i inventories/lab --vault-password-file inventories/lab/vault-password.txt playbooks/site.yml

## test: every test, in groups on two workers (tests/conftest.py); test-quick: lint and unit tests only
test: lab xinference-venv
	pytest -n 2 --no-loadscope-reorder --durations=25

test-quick: setup
	pytest -m "unit or lint"

lint sanity unit molecule: setup
	pytest -m $@

integration: setup xinference-venv
	pytest -m $@

## docs: the variable tables of the role READMEs, generated from each role's meta/argument_specs.yml
docs: setup
	$(PYTHON) -m testkit.role_docs

## build: the installable collection tarball
build: setup
	ansible-galaxy collection build --force --output-path .cache/dist

clean: lab-down
	rm -rf .cache .pytest_cache $(VENV) .collections
