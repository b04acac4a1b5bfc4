# Two entry points (see README): `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint

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

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint --configfile demo/config.yaml
