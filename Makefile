# Set-up is automatic: every target that needs the environment builds .venv first (once, and
# again when pyproject.toml or constraints.txt change).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTHON ?= $(shell for p in python3 python3.12 python3.11 python3.13; do \
            $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
            && { echo $$p; break; }; done)

.PHONY: setup demo test test-all lint format bench constraints clean

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "wattwise needs Python >= 3.11 on PATH" >&2; exit 2; }
	@echo "Setting up $(VENV) with $(PYTHON) (first time: torch + torchvision, a few GB)..."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

## The main job: a measured training on the embedded digits dataset (offline).
demo: $(STAMP)
	$(VENV)/bin/wattwise demo

## The test suite (fast; slow tests: make test-all). The report's browser test needs Chromium and
## the shared-store tests a PostgreSQL server: installed here where the machine allows it (as
## .ci/run does), else those tests are skipped with the reason.
test: $(STAMP)
	@.ci/install-browser || echo "note: without Chromium the browser tests are skipped"
	@.ci/install-postgres || echo "note: without PostgreSQL the shared-store tests are skipped"
	$(PY) -m pytest

test-all: $(STAMP)
	$(PY) -m pytest -m ''

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/monitor_overhead.py

## Re-pin constraints.txt from the current environment (after changing dependencies).
constraints:
	{ echo "# Known-good versions for the README, CI and developers (pip install -c constraints.txt)."; \
	  echo "# Regenerate: make constraints (after changing pyproject.toml's dependencies)."; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^wattwise'; } > constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
