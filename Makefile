# Two commands on a fresh clone: `make demo` and `make test`. Each creates .venv if it is missing,
# installs torch from $(TORCH) first (TORCH=torch==2.13.0 picks the local CPU build), then the
# package with the extras it needs.
PYTHON ?= python3
TORCH ?= torch
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Spinning OpenMP threads can make small training steps many times slower on 2 shared cores; at this
# library's sizes one thread is about twice as fast as two sleeping ones (benchmarks/RESULTS.md).
export OMP_WAIT_POLICY ?= PASSIVE
export OMP_NUM_THREADS ?= 1

.PHONY: install demo demo-quick test test-all lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(PIP) install --quiet "$(TORCH)"
	touch $@

$(VENV)/.installed-%: pyproject.toml $(VENV)/.torch
	$(PIP) install --quiet -e ".[$*]"
	touch $@

install: $(VENV)/.installed-dev

demo: $(VENV)/.installed-plot
	$(BIN)/flowkit demo

demo-quick: $(VENV)/.installed-plot
	$(BIN)/flowkit demo --quick

test: $(VENV)/.installed-test
	$(BIN)/pytest -m "not slow"

test-all: $(VENV)/.installed-test
	$(BIN)/pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/digits_flows.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/digits_flows.py --suite images --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/image_flow_speed.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/residual_flows.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/langevin.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/em_mixtures.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/em_svi.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/vae_digits.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/guides.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/training.py --results benchmarks/RESULTS.md

clean:
	rm -rf $(VENV) flowkit-out .pytest_cache .ruff_cache build *.egg-info
