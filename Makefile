# The two commands of the README: `make demo` (set up, run the main job) and `make test`.
# Both create the virtual environment in .venv on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/hexfleet demo

lint: setup
	$(VENV)/bin/ruff check .

# The tests also train a few steps (the `train` extra: torch) and build and export a shrunk SD 1.5
# (the `export` extra: diffusers, transformers, optimum-onnx); neither is needed at run time.
$(VENV)/.installed-train: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[dev,train,export]'
	$(PY) -m pip install -q --no-deps 'open-clip-torch>=2.24'
	touch $@

test: lint $(VENV)/.installed-train
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
