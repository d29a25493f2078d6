# Two commands on a fresh machine: `make train` and `make test`.
# Each creates .venv on first use and refreshes it when pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: train test lint types unit benchmark cluster-packages clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/dllab-train $(ARGS)

test: lint types unit

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

types: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile  # one worker per core, each test file on one worker

# Debian's one-node SLURM (with accounting on MariaDB) and PostgreSQL, for the cluster tests
# (tests/test_cluster_*.py start and stop their own daemons; without the packages they skip).
# As root on Debian or Ubuntu; the daemons are not enabled or started.
CLUSTER_PACKAGES := munge slurmctld slurmd slurm-client slurmdbd mariadb-server postgresql
cluster-packages:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CLUSTER_PACKAGES)

benchmark: $(STAMP)
	$(BIN)/python scripts/benchmark.py $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
