# The course's commands. `make demo` and `make test` build .venv themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Colab's versions (late 2026), checked by `make test-colab`.
COLAB_PYTHON ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.12.1/bin/python3) $(shell command -v python3.12))
COLAB_VENV   ?= .venv-colab
COLAB_PINS   := "jax==0.7.2" "jaxlib==0.7.2" "flax==0.11.2" "ipywidgets==7.7.1"

PYTEST_NB := --nbval-lax --nbval-current-env

.PHONY: help venv demo test test-unit test-notebooks test-colab lab bench corpus model style-model clean

help:
	@echo "make demo        the main job: corpus, model, music and report in out/"
	@echo "make test        every test (unit tests and notebooks, LABKIT_FAST=1)"
	@echo "make lab         JupyterLab on notebooks/"
	@echo "make test-colab  Colab's versions: unit tests, then the wheel with every notebook (.ci/colab-path)"
	@echo "make bench       benchmarks (results in benchmarks/README.md)"
	@echo "make corpus      rebuild data/ from the music21 corpus"
	@echo "make model       retrain the shipped melody LSTM (labkit/assets/melody_lstm.npz, ~3 min on 2 cores)"
	@echo "make style-model retrain the shipped style model (labkit/assets/style_model/)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,lab]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m labkit demo --out out

test: $(STAMP)
	LABKIT_FAST=1 $(BIN)/python -m pytest -q tests
	LABKIT_FAST=1 $(BIN)/python -m pytest -q --doctest-modules labkit
	LABKIT_FAST=1 $(BIN)/python -m pytest -q $(PYTEST_NB) notebooks

test-unit: $(STAMP)
	LABKIT_FAST=1 $(BIN)/python -m pytest -q tests
	LABKIT_FAST=1 $(BIN)/python -m pytest -q --doctest-modules labkit

test-notebooks: $(STAMP)
	LABKIT_FAST=1 $(BIN)/python -m pytest -q $(PYTEST_NB) notebooks

$(COLAB_VENV)/.installed: pyproject.toml
	@test -n "$(COLAB_PYTHON)" || { echo "make test-colab: FAILED: no Python 3.12 (Colab's version); pyenv install 3.12 or set COLAB_PYTHON" >&2; exit 1; }
	test -x $(COLAB_VENV)/bin/python || $(COLAB_PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/python -m pip install -q --upgrade pip
	$(COLAB_VENV)/bin/python -m pip install -q -e ".[dev]" $(COLAB_PINS)
	touch $@

test-colab: $(STAMP) $(COLAB_VENV)/.installed
	$(COLAB_VENV)/bin/python -c "import jax, flax, ipywidgets, sys; print('colab pins:', sys.version.split()[0], jax.__version__, flax.__version__, ipywidgets.__version__)"
	LABKIT_FAST=1 $(COLAB_VENV)/bin/python -m pytest -q tests
	COLAB_PYTHON="$(COLAB_PYTHON)" PYTHON=$(BIN)/python bash .ci/colab-path

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

corpus: $(STAMP)
	$(BIN)/python -m labkit corpus build

model: $(STAMP)
	$(BIN)/python -m labkit.train_shipped

style-model: $(STAMP)
	$(BIN)/python -m labkit style train --out labkit/assets/style_model --paragraph

# torch 2.13.0 is pinned for the benchmark so that results are comparable (a CPU wheel).
bench: $(STAMP)
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf out build *.egg-info .pytest_cache
