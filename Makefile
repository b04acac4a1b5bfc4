# Two entry points (see README): `make demo` and `make test`. Both set up .venv first.
# `make test-all` is what CI runs: the fast suite plus the end-to-end workflow runs, SLURM
# (with ANCHORFLOW_SLURM_TEST=1) and the real model.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all smollm2 lint rulegraph check-demo-results

setup: $(STAMP)

# torch is installed first and pinned: an open `torch` requirement would pull the CUDA wheels.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[workflow,dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/snakemake --cores 2 --configfile demo/config.yaml

# The fast suite: unit and fast integration tests (markers `slow` and `realmodel` deselected),
# in two pytest-xdist workers (2m33s against 2m56s in one process on the 2-core machine).
test: setup
	$(BIN)/pytest -n 2

# Every test: the fast suite, the end-to-end workflow runs (`slow`) and the real model.
test-all: setup smollm2
	$(BIN)/pytest -m ""

# The real-model tier's SmolLM2 (idempotent: a verified download is kept).
smollm2: setup
	$(BIN)/anchorflow-fetch-smollm2

# The demo's result files against the committed digests (run `make demo` first).
check-demo-results: setup
	$(BIN)/python -m anchorflow.digest results/demo --check demo/results.sha256

lint: setup
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint --configfile demo/config.yaml
	cd src && ../$(BIN)/lint-imports ../pyproject.toml
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pre-commit run --all-files

# docs/rulegraph.svg: every rule, those after the checkpoint too (the demo's checkpoint output
# is built first, so the graph can be evaluated past it). Needs graphviz's `dot`.
rulegraph: setup
	$(BIN)/snakemake acquire_rollouts --cores 1 --configfile demo/config.yaml
	$(BIN)/snakemake --configfile demo/config.yaml --rulegraph | dot -Tsvg > docs/rulegraph.svg
