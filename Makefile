# Two commands on a fresh clone: `make demo` and `make test`. Each creates .venv if it is missing,
# installs torch from $(TORCH) first unless the environment already has one (TORCH=torch==2.13.0
# picks a local CPU build; TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the CPU build
# from PyTorch's public index instead of several GB of CUDA packages), then the package with the
# extras it needs. VENV_ARGS=--system-site-packages reuses a torch installed system-wide.
PYTHON ?= python3
TORCH ?= torch
TORCH_INDEX ?=
VENV ?= .venv
VENV_ARGS ?=
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Spinning OpenMP threads can make small training steps many times slower on 2 shared cores; at this
# library's sizes one thread is about twice as fast as two sleeping ones (benchmarks/RESULTS.md).
export OMP_WAIT_POLICY ?= PASSIVE
export OMP_NUM_THREADS ?= 1

.PHONY: install demo demo-quick test test-all lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV_ARGS) $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "using the installed torch $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	else \
		echo "installing $(TORCH)$(if $(TORCH_INDEX), from $(TORCH_INDEX))"; \
		$(PIP) install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); \
	fi
	touch $@

$(VENV)/.installed-%: pyproject.toml $(VENV)/.torch
	$(PIP) install --quiet -e ".[$*]"
	touch $@

install: $(VENV)/.installed-dev

demo: $(VENV)/.installed-demo
	$(BIN)/flowkit demo

demo-quick: $(VENV)/.installed-demo
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

bench: $(VENV)/.installed-bench $(VENV)/.installed-text
	$(BIN)/python benchmarks/digits_flows.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/digits_flows.py --suite images --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/image_flow_speed.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/residual_flows.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/langevin.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/em_mixtures.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/em_svi.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/vae_digits.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/guides.py --suite all --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/training.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/sts.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/wasserstein.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/glove.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/vq.py --results benchmarks/RESULTS.md
	$(BIN)/python benchmarks/estimators.py --results benchmarks/RESULTS.md

clean:
	rm -rf $(VENV) flowkit-out .pytest_cache .ruff_cache build *.egg-info
