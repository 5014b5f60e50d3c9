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

.PHONY: help venv demo test test-unit test-notebooks test-colab lab bench corpus model style-model chorale-model app browser-deps slides assignments clean

help:
	@echo "make demo        the main job: corpus, model, music and report in out/"
	@echo "make test        every test (unit tests and notebooks, LABKIT_FAST=1)"
	@echo "make assignments the student versions of assignments/source/ into assignments/release/ (nbgrader)"
	@echo "make lab         JupyterLab on notebooks/"
	@echo "make app         the studio app (sampler, mixer, live mode, style index) on http://127.0.0.1:8866/"
	@echo "make browser-deps Debian's Chromium and npm for the browser and slide tests (apt-get; root or sudo)"
	@echo "make test-colab  Colab's versions: unit tests, then the wheel with every notebook (.ci/colab-path)"
	@echo "make bench       benchmarks (results in benchmarks/README.md)"
	@echo "make slides      one reveal.js deck per notebook in slides/build/, working offline (needs npm)"
	@echo "make corpus      rebuild data/ from the music21 corpus"
	@echo "make model       retrain the shipped melody LSTMs (melody_lstm.npz ~3 min, melody_conditioned.npz ~11 min on 2 cores)"
	@echo "make style-model retrain the shipped style model (labkit/assets/style_model/)"
	@echo "make chorale-model retrain the shipped chorale harmony model (labkit/assets/chorale_model/, ~10 min)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,lab,app]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m labkit demo --out out

test: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory slides; \
	 else echo "make test: npm not found: no slides built (tests/test_slides.py skips them; fails them under CI)"; fi
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
	# not the browser tests: the app (Voila) is not part of the Colab course; `make test` runs them
	LABKIT_FAST=1 $(COLAB_VENV)/bin/python -m pytest -q -m "not browser" tests
	COLAB_PYTHON="$(COLAB_PYTHON)" PYTHON=$(BIN)/python bash .ci/colab-path

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

# The studio app served by Voila; the URL is printed (python -m labkit app --help for the options).
app: $(STAMP)
	$(BIN)/python -m labkit app

# What tests/test_browser.py needs besides the Python packages: Debian's Chromium (no browser download).
browser-deps: $(STAMP)
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="chromium"; \
	  command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q $$missing; \
	    else sudo apt-get update -q && sudo apt-get install -y -q $$missing; fi; fi
	@chromium --version
	@echo "npm $$(npm --version)"
	@$(BIN)/python -c "import playwright, voila; print('playwright and voila: installed')"

corpus: $(STAMP)
	$(BIN)/python -m labkit corpus build

model: $(STAMP)
	$(BIN)/python -m labkit.train_shipped
	nice -n 10 $(BIN)/python -m labkit.train_shipped --conditioned

style-model: $(STAMP)
	$(BIN)/python -m labkit style train --out labkit/assets/style_model --paragraph

chorale-model: $(STAMP)
	nice -n 10 $(BIN)/python -m labkit.polyphony.harmony_model --out labkit/assets/chorale_model --steps 2400 --seed 0

# torch 2.13.0 is pinned for the benchmark so that results are comparable (a CPU wheel).
bench: $(STAMP)
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python benchmarks/run.py

# The lecture decks (slides/README.md): reveal.js and MathJax pinned in slides/package-lock.json and installed
# by npm ci into slides/node_modules; slides/build.py writes one deck per notebook into slides/build/.
SLIDES_NPM := slides/node_modules/.package-lock.json
$(SLIDES_NPM): slides/package.json slides/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "make slides: FAILED: npm is not installed (apt-get install npm)" >&2; exit 1; }
	cd slides && npm ci --no-audit --no-fund
	touch $@

slides/build/index.html: $(STAMP) $(SLIDES_NPM) slides/build.py slides/template/offline.html.j2 $(wildcard notebooks/[0-9][0-9]_*.ipynb)
	$(BIN)/python slides/build.py

slides: slides/build/index.html

# The graded assignments: nbgrader writes each student version (solutions and hidden tests removed) from its
# one source notebook; the release is committed so that its Colab badge opens (tests/test_assignments.py).
assignments: $(STAMP)
	cd assignments && $(abspath $(BIN))/python -m nbgrader generate_assignment "*" --force --no-db --log-level=WARN
	@ls assignments/release/*/*.ipynb

clean:
	rm -rf out build slides/build *.egg-info .pytest_cache
