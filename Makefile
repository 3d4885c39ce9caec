# Two commands on a fresh machine with only Python 3.11+: `make demo` and `make test`.
# Each creates the virtual environment and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test wheel-check lint bench dev clean chromium

$(INSTALLED): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is required; found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@echo "[1/3] creating $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "[2/3] upgrading pip"
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "[3/3] installing the project and its pinned dependencies (about 2 minutes the first time)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

# One Dagster home for `make demo` and `make dev`, so the UI shows what the demo materialized.
DAGSTER_HOME_DIR ?= $(CURDIR)/dagster_home

demo: $(INSTALLED)
	mkdir -p $(DAGSTER_HOME_DIR)
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(BIN)/sagemaker-warehouse demo

# The report's browser test draws it in Debian's chromium (headless); installed here when missing.
CHROMIUM_NOTE := note: chromium could not be installed; the report's browser test will be skipped
chromium:
	@command -v chromium >/dev/null 2>&1 || apt-get install -y -q chromium >/dev/null 2>&1 \
		|| (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1) \
		|| echo "$(CHROMIUM_NOTE)"

test: $(INSTALLED) chromium
	$(BIN)/ruff check pipelines tests benchmarks
	$(BIN)/sqlfluff lint sql --nocolor
	$(BIN)/python -m pytest -n 3 --dist worksteal --durations=15

# The package as it is deployed: a wheel installed in a fresh virtual environment, run from an empty folder.
# Without the demo extra (a production install) `demo` says what to install and exits 2; with it, it runs.
WHEEL_CHECK := build/wheel-check
wheel-check: $(INSTALLED)
	rm -rf $(WHEEL_CHECK) && mkdir -p $(WHEEL_CHECK)/run
	$(BIN)/python -m pip wheel --quiet --no-deps -w $(WHEEL_CHECK)/dist .
	$(PYTHON) -m venv $(WHEEL_CHECK)/venv
	$(WHEEL_CHECK)/venv/bin/python -m pip install --quiet $(WHEEL_CHECK)/dist/*.whl
	cd $(WHEEL_CHECK)/run && { ../venv/bin/sagemaker-warehouse demo --jobs 100 > ../without-demo.txt 2>&1; \
		test $$? -eq 2; } && grep -q "sagemaker-training-warehouse\[demo\]" ../without-demo.txt
	$(WHEEL_CHECK)/venv/bin/python -m pip install --quiet "$$(ls $(WHEEL_CHECK)/dist/*.whl)[demo]"
	cd $(WHEEL_CHECK)/run && ../venv/bin/sagemaker-warehouse demo --jobs 100
	# The code location as deploy/Dockerfile serves it: Dagster's code server loads the definitions and answers.
	# Afterwards the server and its child are killed (it does not stop on SIGTERM from a background shell).
	cd $(WHEEL_CHECK)/run && { ../venv/bin/dagster code-server start --host 127.0.0.1 --port 4266 \
		--module-name pipelines.definitions > ../code-server.txt 2>&1 & server=$$!; ok=1; \
		for i in $$(seq 90); do ../venv/bin/dagster api grpc-health-check --port 4266 >/dev/null 2>&1 && { ok=0; break; }; \
		sleep 1; done; pkill -KILL -P $$server; kill -KILL $$server; test $$ok -eq 0 || { cat ../code-server.txt; exit 1; }; }
	@echo "wheel-check: demo and the code server work from the installed wheel"

bench: $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/extract.py
	$(BIN)/python benchmarks/normalize.py
	$(BIN)/python benchmarks/nightly.py --jobs 100000 --nights 10 --full-every 5 --compact-every 4

dev: $(INSTALLED)
	mkdir -p $(DAGSTER_HOME_DIR)
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf $(VENV) warehouse build .pytest_cache .ruff_cache
