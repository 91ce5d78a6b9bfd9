# Entry points. `make repro` = set up + run the whole pipeline; `make test` = set up + tests;
# `make paper` = the whole pipeline with the reference's training settings (params/paper.yaml
# through `dvc exp run`; extra keys: make paper PAPER_ARGS="-S train.epochs=1");
# `make fineparser` = the default plus FineParser's ablations (params/fineparser.yaml, the same way).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CLUSTER_STAMP := $(VENV)/.installed-cluster

.PHONY: venv cluster-venv repro paper fineparser test test-pipeline test-slurm test-all lint clean-outputs

venv: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile -r requirements.txt
	$(BIN)/pip install --quiet --no-compile --no-deps -r requirements-test.txt
	$(BIN)/pip install --quiet --no-deps -e .
# pip byte-compiles serially; compileall writes the same .pyc with one process per core (docs/BENCHMARKS.md).
# Not optional: with PYTHONDONTWRITEBYTECODE set no process would write them, and each would compile again.
# Left out: torch's one file in Python 3.12 syntax (pip's compilation skips it silently).
	$(BIN)/python -m compileall -q -j 0 -x '/torch/testing/_internal/py312_intrinsics\.py$$' \
	  $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
	$(BIN)/dvc config --local core.analytics false 2>/dev/null || true
	touch $(STAMP)

repro: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro

paper: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/aqa paper $(PAPER_ARGS)

fineparser: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/aqa paper --overlay params/fineparser.yaml $(PAPER_ARGS)

test: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest

# The tests that run the whole tiny pipeline through DVC and Snakemake (tests/e2e, the reliability
# suite): out of `make test` for its 10-minute budget; CI runs both.
test-pipeline: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -m "reliability or pipeline"

test-all: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -m "slow or not slow"

# The SLURM executor plugin: the `cluster` optional group of pyproject.toml.
cluster-venv: $(CLUSTER_STAMP)

$(CLUSTER_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[cluster]'
	touch $(CLUSTER_STAMP)

# The tests marked `slurm` on a single-node SLURM of this machine (as root: the script installs
# slurm-wlm and munge if missing), stopped again whatever the outcome. docs/CLUSTER.md.
test-slurm: cluster-venv
	scripts/local_slurm.sh start
	PATH=$(CURDIR)/$(BIN):$$PATH AQA_REQUIRE_SLURM=1 $(BIN)/pytest -m slurm; \
	  status=$$?; scripts/local_slurm.sh stop; exit $$status
