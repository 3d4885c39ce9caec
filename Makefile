# Two commands on a fresh machine with only Python 3.11+: `make demo` and `make test`.
# Each creates the virtual environment and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test lint bench dev clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is required; found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/sagemaker-warehouse demo

test: $(INSTALLED)
	$(BIN)/ruff check pipelines tests benchmarks
	$(BIN)/python -m pytest

bench: $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/extract.py
	$(BIN)/python benchmarks/normalize.py

dev: $(INSTALLED)
	$(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf $(VENV) warehouse .pytest_cache .ruff_cache
